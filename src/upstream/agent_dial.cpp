// A route through a reverse agent: one of the agent's idle reverse connections (any worker's:
// agent/agent_registry.h) becomes this connection's target transport; TUNNEL goes out, the
// agent connects and answers STATUS, and the relay starts. An agent with no idle connection
// is waited for (it opens more as they are used) within connect_timeout_ms. A reverse
// connection that closes or talks nonsense before STATUS is a failed attempt (another member
// may be tried: nothing of the user's has been sent); a STATUS other than connected is the
// target's answer and is passed on at once, as an upstream's would be.
#include <errno.h>

#include "agent/agent_registry.h"
#include "core/log.h"
#include "core/worker.h"
#include "proto/agent_frame.h"
#include "upstream/dialer.h"
#include "upstream/upstream_session.h"

namespace up {

namespace {
Result result_for(agent::Status s) {
  switch (s) {
    case agent::Status::denied_by_acl: return Result::denied;
    case agent::Status::network_unreachable: return Result::unreachable;
    case agent::Status::host_unreachable: return Result::dns_failed;
    case agent::Status::refused: return Result::refused;
    case agent::Status::timeout: return Result::timeout;
    default: return Result::upstream_error;
  }
}
}  // namespace

void Dialer::set_agent_waiting(bool on) {
  if (on == agent_waiting_) return;
  agent_waiting_ = on;
  AgentRegistry& reg = *c_.worker().runtime().agents;
  on ? reg.waiting_started() : reg.waiting_ended();
}

void Dialer::agent_dial() {
  set_agent_waiting(false);
  UpstreamSession& us = *upstream_;
  const std::string& id = us.current()->config.name;  // the agent id (config.id is "agent:ID")
  AgentRegistry& reg = *c_.worker().runtime().agents;
  std::optional<IdleReverse> idle = reg.take_idle(id);
  if (!idle) {
    if (reg.current(id) == 0)
      return attempt_failed({Result::upstream_error, 0x01, 502}, false, "agent not connected");
    // Connected but every idle connection is taken: the agent is opening more. Retried when
    // one joins the pool (AgentFrontend wakes the workers) and each tick, until one comes or
    // the connect deadline passes.
    set_agent_waiting(true);
    c_.wait_for_retry();
    return;
  }
  c_.set_target_fd(idle->fd);
  c_.set_target_tls(std::move(idle->tls));
  us.agent = true;
  us.phase = UpstreamSession::Phase::handshake;
  us.agent_in.clear();
  us.tunnel_id = reg.next_tunnel_id();
  size_t n = agent::encode(agent::Tunnel{us.tunnel_id, c_.target()}, us.frame);
  if (n == 0)  // a target the protocol cannot name (cannot happen after the frontends' checks)
    return c_.fail({Result::unsupported, 0x08, 400});
  c_.submit_send(Side::target, reinterpret_cast<const char*>(us.frame), static_cast<uint32_t>(n));
}

void Dialer::retry() {
  if (agent_waiting_) agent_dial();
}

void Dialer::agent_on_sent() {
  c_.submit_recv(Side::target, upstream_->buf.get(), UpstreamSession::buf_cap);
}

void Dialer::agent_on_recv(int res) {
  UpstreamSession& us = *upstream_;
  if (res <= 0)
    return attempt_failed({Result::upstream_error, 0x01, 502}, false,
                          "agent closed the reverse connection before STATUS");
  us.agent_in.append(us.buf.get(), static_cast<size_t>(res));
  agent::Message m;
  size_t used = 0;
  agent::Error err = agent::Error::none;
  agent::Parse r = agent::parse_message(
      {reinterpret_cast<const uint8_t*>(us.agent_in.data()), us.agent_in.size()}, m, used, err);
  if (r == agent::Parse::need_more)
    return c_.submit_recv(Side::target, us.buf.get(), UpstreamSession::buf_cap);
  const auto* st = r == agent::Parse::done ? std::get_if<agent::TunnelStatus>(&m) : nullptr;
  if (!st || st->tunnel_id != us.tunnel_id) {
    UP_WARN("agent %s: tunnel %llu: %s instead of its STATUS", us.current()->config.name.c_str(),
            static_cast<unsigned long long>(us.tunnel_id),
            r == agent::Parse::error ? agent::error_text(err) : "another frame");
    return attempt_failed({Result::upstream_error, 0x01, 502}, false, "bad STATUS");
  }
  if (st->code != agent::Status::connected)
    return c_.fail(
        {result_for(st->code), agent::socks_reply(st->code), agent::http_status(st->code)});
  us.leftover = us.agent_in.substr(used);  // the target's first bytes, if any came along
  c_.worker().runtime().agents->tunnel_started(us.current()->config.name);
  upstream_ready();
}

}  // namespace up
