#include "tls/ktls_probe.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace up {

KtlsSupport probe_ktls() {
  KtlsSupport out;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.why = std::string("socket: ") + strerror(errno);
    return out;
  }
  // The ULP attaches only to a connected socket: on this unconnected one, ENOENT says the
  // kernel has no "tls" ULP (module absent or not built), anything else that it has one.
  int r = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls");
  int err = r == 0 ? 0 : errno;
  close(fd);
  if (err == ENOENT) {
    out.why = "the kernel has no TLS ULP (setsockopt TCP_ULP \"tls\": ENOENT; modprobe tls, or "
              "a kernel with CONFIG_TLS); TLS is relayed in user space";
    return out;
  }
  out.available = true;
  out.why = "the kernel has the TLS ULP";
  return out;
}

}  // namespace up
