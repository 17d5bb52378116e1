# Container images: the trees of rootfs.sh committed as base images, then the Dockerfiles
# built on them with buildah (no daemon, no registry, no container runtime: no Dockerfile
# here has a RUN step), exported as OCI archives and imported into the node's containerd.
# buildah keeps its own vfs storage under $IMAGES_CACHE, apart from anything else on the
# machine. Sourced by tests/images/build, never executed.

BUILDAH_STORAGE=(--root "$IMAGES_CACHE/storage" --runroot "$IMAGES_CACHE/run" --storage-driver vfs)
ARCHIVES_DIR="$IMAGES_CACHE/archives"
IMAGE_PREFIX=localhost/silo
CONTAINERD_SOCKET=/run/containerd/containerd.sock
CONTAINERD_NAMESPACE=k8s.io
# The Dockerfile's build targets, one per binary of the workspace.
APP_TARGETS=(silo-operator user-service booking-service payment-service)
# The path rootfs images are given, as distroless sets it (a scratch image has none).
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

local_buildah() { buildah "${BUILDAH_STORAGE[@]}" "$@"; }

image_exists() { local_buildah inspect --type image "$1" >/dev/null 2>&1; }

image_id() { local_buildah inspect --type image --format '{{.FromImageID}}' "$1"; }

# image_label <image> <label>: the label's value, empty when the image or label is missing.
image_label() {
  local_buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# remove_stale_images <image>: drops the other tags of the image's repository and the
# images no tag names any more from buildah's storage; vfs keeps a full copy of every
# layer, so old versions would pile up.
remove_stale_images() {
  local image="$1" other
  for other in $(local_buildah images --noheading --format '{{.Name}}:{{.Tag}}' --filter reference="${image%:*}"); do
    [[ "$other" == "$image" ]] || local_buildah rmi --force "$other" >/dev/null
  done
  local_buildah rmi --prune >/dev/null 2>&1 || true
}

# build_key <base image> <file...>: digest of all an image is made from, the base image
# (by ID) and the files; a tag made of it changes whenever the image would.
build_key() {
  local base="$1" file; shift
  { image_id "$base"; for file in "$@"; do file_digest "$file"; done; } | sha256sum | cut -c1-12
}

# file_digest <file>: the file's sha256, remembered with its size, modification time and
# inode, so the unchanged 100+ MB binaries are not read again on every run (3 s for four).
file_digest() {
  local file="$1" stat memo digest
  stat="$(stat -c '%s %.9Y %i' "$file")"
  memo="$IMAGES_CACHE/digests/$(sha256sum <<<"$file" | cut -c1-16)"
  if [[ -f "$memo" && "$(head -n1 "$memo")" == "$stat" ]]; then
    tail -n1 "$memo"
    return
  fi
  digest="$(sha256sum "$file" | cut -d' ' -f1)"
  printf '%s\n%s\n' "$stat" "$digest" >"$memo"
  echo "$digest"
}

# commit_rootfs_image <tree> <repository>: the tree as a one-layer image tagged with the
# tree's key, so an unchanged tree is never committed twice. Prints the image's name.
commit_rootfs_image() {
  local tree="$1" image; image="$2:$(cat "$1.key")"
  if ! image_exists "$image"; then
    local container mountpoint
    container="$(local_buildah from --quiet scratch)"
    mountpoint="$(local_buildah mount "$container")"
    # tar, not buildah copy: owners, modes and links of the tree exactly as they are.
    tar -C "$tree" --numeric-owner -cf - . | tar -C "$mountpoint" --numeric-owner -xpf - \
      || die "could not copy $tree into a new image"
    local_buildah umount "$container" >/dev/null
    local_buildah config --env PATH="$DEFAULT_PATH" --created-by "tests/images/build: $tree" "$container"
    local_buildah commit --quiet --rm "$container" "$image" >/dev/null || die "buildah commit of $image failed"
    remove_stale_images "$image"
  fi
  echo "$image"
}

# build_dockerfile_image <image> <key> <dockerfile> <context> [buildah bud options...]:
# builds unless the image exists with the same key (a digest of all that goes into it),
# which it carries as a label. Records the image in BUILT_IMAGES when it built it.
build_dockerfile_image() {
  local image="$1" key="$2" dockerfile="$3" context="$4"; shift 4
  [[ "$(image_label "$image" dev.silo.build-key)" == "$key" ]] && return 0
  local logfile; logfile="$IMAGES_CACHE/logs/$(basename "${image%:*}").log"
  local_buildah bud --quiet --pull=never --label "dev.silo.build-key=$key" \
    -f "$dockerfile" -t "$image" "$@" "$context" >"$logfile" 2>&1 \
    || die "buildah bud of $image failed; see $logfile"
  remove_stale_images "$image"
  BUILT_IMAGES+=("$image")
}

# export_archive <image>: writes the image's OCI archive unless one of this very image
# (by ID) exists; prints its path. Older archives of the same repository are removed.
# gzip level 1: a third faster than the default for 100+ MB binaries, a tenth larger,
# and the archive only travels to the containerd on this machine.
export_archive() {
  local image="$1" id archive repository layout
  id="$(image_id "$image")"
  repository="$(basename "${image%:*}")"
  archive="$ARCHIVES_DIR/$repository-${id:0:12}.oci.tar"
  if [[ ! -f "$archive" ]]; then
    layout="$(mktemp -d)"
    local_buildah push --quiet --compression-level 1 "$image" "oci:$layout:$image" >"$IMAGES_CACHE/logs/push.log" 2>&1 \
      || die "buildah push of $image to an OCI layout failed; see $IMAGES_CACHE/logs/push.log"
    name_for_containerd "$layout/index.json" "$image"
    rm -f "$ARCHIVES_DIR/$repository"-*.oci.tar
    tar -C "$layout" -cf "$archive.tmp" oci-layout index.json blobs
    mv "$archive.tmp" "$archive"
    rm -rf "$layout"
  fi
  echo "$archive"
}

# buildah records the name as org.opencontainers.image.ref.name, which `ctr images import`
# keeps only under a matching --base-name; io.containerd.image.name makes it the image's
# name for any importer.
name_for_containerd() {
  local index="$1" image="$2"
  jq --arg name "$image" '.manifests[0].annotations["io.containerd.image.name"] = $name' "$index" >"$index.named"
  mv "$index.named" "$index"
}

node_is_running() { [[ -S "$CONTAINERD_SOCKET" ]] && node_ctr version >/dev/null 2>&1; }

node_ctr() { ctr -a "$CONTAINERD_SOCKET" -n "$CONTAINERD_NAMESPACE" "$@"; }

# import_into_node <image> <archive>: imports unless containerd already holds the image
# under that name with the archive's manifest. containerd names the image after the
# archive's annotation; the name is checked afterwards. Records it in IMPORTED_IMAGES.
import_into_node() {
  local image="$1" archive="$2" manifest held
  manifest="$(tar -xOf "$archive" index.json | jq -r '.manifests[0].digest')"
  held="$(node_ctr images ls "name==$image" | awk 'NR > 1 { print $3 }')"
  [[ "$held" == "$manifest" ]] && return 0
  node_ctr images import "$archive" >"$IMAGES_CACHE/logs/import.log" 2>&1 \
    || die "ctr images import $archive failed; see $IMAGES_CACHE/logs/import.log"
  held="$(node_ctr images ls "name==$image" | awk 'NR > 1 { print $3 }')"
  [[ "$held" == "$manifest" ]] || die "containerd did not name the image of $archive $image"
  IMPORTED_IMAGES+=("$image")
}
