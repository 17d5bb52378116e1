# Root filesystems for the local images, made from Debian packages and cached under
# $IMAGES_CACHE/rootfs: a debootstrap minbase tree of bookworm and, derived from it,
# the runtime base the Rust binaries run on, PostgreSQL 15 and NATS. Each tree is built
# in a temporary directory and renamed when complete, so an interrupted run never leaves
# a tree that looks finished. Sourced by tests/images/build, never executed.

IMAGES_CACHE="$SILO_CACHE/images"
ROOTFS_DIR="$IMAGES_CACHE/rootfs"
DEBIAN_SUITE=bookworm
IMAGE_TOOL_PACKAGES=(debootstrap buildah jq)
# debootstrap's minbase plus what every image wants: CA roots, time zones, /etc/services.
MINBASE_EXTRA_PACKAGES=ca-certificates,tzdata,netbase
# The runtime base holds exactly the files of these packages: what distroless/cc holds
# (the Dockerfiles' public default base), so the binaries run alike on both. No dpkg,
# apt, shell or compiler: a package not listed here is not in the image.
RUNTIME_BASE_PACKAGES=(base-files netbase tzdata ca-certificates libc6 libgcc-s1)
POSTGRES_MAJOR=15
POSTGRES_PACKAGES=("postgresql-$POSTGRES_MAJOR")
# The official postgres image's ids, so data directories move between the two images.
POSTGRES_UID=999
NONROOT_UID=65532

# install_missing_packages <log file> <package...>: apt-get installs those not installed.
install_missing_packages() {
  local logfile="$1" missing=() p; shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $EUID -eq 0 ]] || die "missing Debian packages (${missing[*]}); run tests/images/build as root once to install them"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
    "${missing[@]}" >"$logfile" 2>&1 || die "apt-get install failed; see $logfile"
}

# The Debian mirror apt uses on this machine, so the images hold the same packages
# as the host and need no other network access.
debian_mirror() {
  local mirror=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    # deb822: the URIs of the stanza whose Suites name the release itself.
    mirror="$(awk -v suite="$DEBIAN_SUITE" '
      /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = uri }
      /^$/ { if (found) { print found; exit } uri = "" } END { if (found) print found }' \
      /etc/apt/sources.list.d/debian.sources | head -n1)"
  fi
  if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
    mirror="$(sed -e 's/\[[^]]*\]//' /etc/apt/sources.list \
      | awk -v suite="$DEBIAN_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')"
  fi
  [[ -n "$mirror" ]] || die "no Debian $DEBIAN_SUITE mirror found in /etc/apt/sources.list{,.d/debian.sources}"
  echo "$mirror"
}

# Digest of what a derived tree is made from: this recipe and the minbase tree's key.
# A change to either rebuilds the derived trees (and so the images made from them).
rootfs_recipe_digest() {
  cat "${BASH_SOURCE[0]}" "$ROOTFS_DIR/minbase.key" | sha256sum | cut -c1-12
}

# bookworm minbase from the host's mirror, cached until the mirror or package list changes.
# debootstrap runs in its own mount namespace so its /proc and /sys mounts vanish with it,
# even when it is killed half-way.
build_minbase_rootfs() {
  local dir="$ROOTFS_DIR/minbase" mirror key
  mirror="$(debian_mirror)"
  key="$DEBIAN_SUITE $mirror $MINBASE_EXTRA_PACKAGES upgraded"
  [[ -d "$dir" && "$(cat "$ROOTFS_DIR/minbase.key" 2>/dev/null)" == "$key" ]] && return 0
  log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (about 30 s; cached afterwards)"
  mkdir -p "$ROOTFS_DIR"
  rm -rf "$dir" "$dir.tmp"
  unshare --mount --propagation private \
    debootstrap --variant=minbase --include="$MINBASE_EXTRA_PACKAGES" "$DEBIAN_SUITE" "$dir.tmp" "$mirror" \
    >"$ROOTFS_DIR/debootstrap.log" 2>&1 || die "debootstrap failed; see $ROOTFS_DIR/debootstrap.log"
  # The host's sources (release, updates, security) so apt in a chroot sees the same
  # package versions as the host; no other sources files are copied.
  rm -f "$dir.tmp/etc/apt/sources.list"
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    cp /etc/apt/sources.list.d/debian.sources "$dir.tmp/etc/apt/sources.list.d/"
  fi
  if [[ -f /etc/apt/sources.list ]]; then grep '^deb ' /etc/apt/sources.list >"$dir.tmp/etc/apt/sources.list" || true; fi
  # debootstrap takes the release alone; the images want its security and point updates.
  in_chroot "$dir.tmp" sh -euc 'apt-get update -qq; apt-get upgrade -y -qq; apt-get clean; rm -rf /var/lib/apt/lists/*' \
    >>"$ROOTFS_DIR/debootstrap.log" 2>&1 || die "apt-get upgrade in the minbase tree failed; see $ROOTFS_DIR/debootstrap.log"
  rm -f "$dir.tmp/etc/resolv.conf"
  mv "$dir.tmp" "$dir"
  echo "$key" >"$ROOTFS_DIR/minbase.key"
}

# in_chroot <tree> <command...>: runs the command in the tree with /proc mounted and the
# host's resolver, in a private mount namespace so nothing stays mounted afterwards.
in_chroot() {
  local tree="$1"; shift
  cp /etc/resolv.conf "$tree/etc/resolv.conf"
  unshare --mount --propagation private -- sh -c 'mount -t proc proc "$1/proc" && shift && exec chroot "$@"' \
    sh "$tree" "$tree" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"
}

# files_of_packages <tree> <package...>: the paths the packages installed in the tree, for
# tar, less programs (a runtime base runs only the image's own binary; the few these
# packages have are scripts, and there is no shell), examples, changelogs and manuals.
# Directories that bookworm's merged /usr turned into links (/lib -> usr/lib) are
# written with their /usr path, so the files land beside the links, not over them.
files_of_packages() {
  local tree="$1"; shift
  dpkg-query --admindir="$tree/var/lib/dpkg" -L "$@" \
    | grep '^/.' | grep -v -E -e '^/(usr/)?s?bin/.' -e '^/etc/update-motd\.d/.' \
      -e '^/usr/share/doc/[^/]+/(changelog|examples)' -e '^/usr/share/man/' \
    | sed -E 's#^/(bin|sbin|lib|lib32|lib64|libx32)/#/usr/\1/#' \
    | sed 's#^/##' | sort -u
}

# The runtime base: the files of RUNTIME_BASE_PACKAGES from the minbase tree, the CA bundle
# update-ca-certificates generated there, the merged-/usr links and the users a numeric
# USER maps to. dpkg's record of each package goes to status.d/, as in distroless, so
# image scanners still see which versions are inside.
build_runtime_base_rootfs() {
  local minbase="$ROOTFS_DIR/minbase" dir="$ROOTFS_DIR/runtime-base" key link p
  key="$(rootfs_recipe_digest)"
  [[ -d "$dir" && "$(cat "$dir.key" 2>/dev/null)" == "$key" ]] && return 0
  rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir.tmp/var/lib/dpkg/status.d"
  files_of_packages "$minbase" "${RUNTIME_BASE_PACKAGES[@]}" >"$ROOTFS_DIR/runtime-base.files"
  tar -C "$minbase" --no-recursion -T "$ROOTFS_DIR/runtime-base.files" -cf - | tar -C "$dir.tmp" -xpf - \
    || die "could not copy the runtime base's packages out of $minbase"
  tar -C "$minbase" -cf - etc/ssl/certs | tar -C "$dir.tmp" -xpf -
  # The packages list some of these links themselves; copy only the missing ones.
  for link in bin sbin lib lib64; do
    [[ -L "$minbase/$link" && ! -L "$dir.tmp/$link" ]] && cp -P "$minbase/$link" "$dir.tmp/$link"
  done
  for p in "${RUNTIME_BASE_PACKAGES[@]}"; do
    dpkg-query --admindir="$minbase/var/lib/dpkg" -s "$p" >"$dir.tmp/var/lib/dpkg/status.d/$p"
  done
  write_runtime_users "$dir.tmp"
  mv "$dir.tmp" "$dir"
  echo "$key" >"$dir.key"
}

# /etc/passwd and /etc/group with root, nobody and nonroot (the UID the Dockerfiles run
# as), no login shells (there is no shell), and name-service lookups from files then DNS.
write_runtime_users() {
  local root="$1"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    "nonroot:x:$NONROOT_UID:$NONROOT_UID:nonroot:/home/nonroot:/sbin/nologin" \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' "nonroot:x:$NONROOT_UID:" 'nogroup:x:65534:' >"$root/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' 'networks: files' \
    'protocols: files' 'services: files' >"$root/etc/nsswitch.conf"
  install -d -m 0700 "$root/root"
  install -d -m 0700 -o "$NONROOT_UID" -g "$NONROOT_UID" "$root/home/nonroot"
  install -d -m 1777 "$root/tmp"
}

# minbase with PostgreSQL 15 installed from the host's sources in a chroot, then cleaned.
# The postgres user gets the official image's UID/GID before the package would pick one.
build_postgres_rootfs() {
  local minbase="$ROOTFS_DIR/minbase" dir="$ROOTFS_DIR/postgres" key
  key="$(rootfs_recipe_digest)"
  [[ -d "$dir" && "$(cat "$dir.key" 2>/dev/null)" == "$key" ]] && return 0
  log "installing ${POSTGRES_PACKAGES[*]} in a chroot of the minbase tree (about a minute; cached afterwards)"
  rm -rf "$dir" "$dir.tmp"
  cp -a "$minbase" "$dir.tmp"
  # Debian would create a cluster and start it on install; the image's entrypoint runs
  # initdb itself, on the volume, at the first start.
  mkdir -p "$dir.tmp/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' >"$dir.tmp/etc/postgresql-common/createcluster.d/no-main-cluster.conf"
  printf '#!/bin/sh\nexit 101\n' >"$dir.tmp/usr/sbin/policy-rc.d"
  chmod 0755 "$dir.tmp/usr/sbin/policy-rc.d"
  in_chroot "$dir.tmp" sh -euc "
    groupadd --system --gid $POSTGRES_UID postgres
    useradd --system --uid $POSTGRES_UID --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ${POSTGRES_PACKAGES[*]}
    apt-get clean" >"$ROOTFS_DIR/postgres-install.log" 2>&1 \
    || die "installing PostgreSQL in the chroot failed; see $ROOTFS_DIR/postgres-install.log"
  clean_chroot "$dir.tmp"
  mv "$dir.tmp" "$dir"
  echo "$key" >"$dir.key"
}

# What installing left that an image must not carry: apt's lists and caches, the chroot's
# resolver and service policy, docs but their copyright, translations of messages (55 MB;
# container logs are read in English), logs, and the snakeoil key that ssl-cert generated
# (one private key shared by every container would be no secret).
clean_chroot() {
  local root="$1"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*/LC_MESSAGES \
    "$root/etc/resolv.conf" "$root/usr/sbin/policy-rc.d" \
    "$root/etc/ssl/private/ssl-cert-snakeoil.key" "$root/etc/ssl/certs/ssl-cert-snakeoil.pem"
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  find "$root/var/log" -type f -delete
}

# The runtime base plus Debian's nats-server (a Go binary linked to glibc only) and a
# store directory owned by the non-root user the image runs as. The package comes from the
# host's apt sources; only its binary and copyright are taken, not its service files.
build_nats_rootfs() {
  local dir="$ROOTFS_DIR/nats" key deb work
  key="$(rootfs_recipe_digest)"
  [[ -d "$dir" && "$(cat "$dir.key" 2>/dev/null)" == "$key" ]] && return 0
  work="$(mktemp -d)"
  (cd "$work" && { apt-get download -qq nats-server || { apt-get update -qq && apt-get download -qq nats-server; }; }) \
    >"$ROOTFS_DIR/nats-download.log" 2>&1 || die "apt-get download nats-server failed; see $ROOTFS_DIR/nats-download.log"
  deb="$(echo "$work"/nats-server_*.deb)"
  dpkg-deb -x "$deb" "$work/pkg"
  rm -rf "$dir" "$dir.tmp"
  cp -a "$ROOTFS_DIR/runtime-base" "$dir.tmp"
  install -D -m 0755 "$work/pkg/usr/sbin/nats-server" "$dir.tmp/usr/sbin/nats-server"
  install -D -m 0644 "$work/pkg/usr/share/doc/nats-server/copyright" "$dir.tmp/usr/share/doc/nats-server/copyright"
  dpkg-deb -f "$deb" >"$dir.tmp/var/lib/dpkg/status.d/nats-server"
  install -d -m 0755 -o "$NONROOT_UID" -g "$NONROOT_UID" "$dir.tmp/data"
  # Upstream version without Debian's revision: the image's tag.
  dpkg-deb -f "$deb" Version | sed 's/-[^-]*$//' >"$dir.tmp.version"
  rm -rf "$work"
  mv "$dir.tmp" "$dir" && mv "$dir.tmp.version" "$dir.version"
  echo "$key" >"$dir.key"
}
