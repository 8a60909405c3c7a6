#include "agent/agent_frontend.h"
#include "frontend/frontend.h"
#include "frontend/http_frontend.h"
#include "frontend/socks5_frontend.h"
#include "frontend/vless_frontend.h"

namespace up {

std::unique_ptr<Frontend> make_frontend(Protocol p, Connection& c) {
  switch (p) {
    case Protocol::http: return std::make_unique<HttpFrontend>(c);
    case Protocol::vless: return std::make_unique<VlessFrontend>(c);
    case Protocol::agent: return std::make_unique<AgentFrontend>(c);
    default: return std::make_unique<Socks5Frontend>(c);
  }
}

}  // namespace up
