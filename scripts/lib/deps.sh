# Debian packages uringproxy needs, and a function that installs the missing ones.
# Sourced by scripts/run and scripts/test.

BUILD_PACKAGES="meson ninja-build pkg-config g++ cmake liburing-dev libssl-dev libmimalloc-dev
  rapidjson-dev libc-ares-dev libcrypt-dev doctest-dev libbenchmark-dev libcli11-dev openssl
  libpq-dev"
# Peers the integration tests run against: dante (SOCKS5 upstream), tinyproxy (HTTP
# upstream), stunnel (TLS in front of either), microsocks, prometheus (scrapes /metrics),
# v2ray (a VLESS client), PostgreSQL (the fleet store), wrk and hey (bench/compare's smoke test).
TEST_PACKAGES="clang libclang-rt-14-dev curl python3 python3-pytest python3-pytest-xdist python3-socks whois
  procps iproute2 passwd dante-server tinyproxy stunnel4 microsocks prometheus v2ray postgresql
  wrk hey"
# bench/compare also runs haproxy, and squid, wrk and hey for the HTTP forward cases (issue 15),
# and a throwaway sshd plus the ssh client for its OpenSSH reverse dynamic forward peer
# (ssh-reverse, issue 12).
BENCH_PACKAGES="haproxy dante-server tinyproxy microsocks stunnel4 v2ray squid wrk hey
  openssh-server openssh-client"

# install_missing PKG...: apt-get installs only what dpkg does not already have.
install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
