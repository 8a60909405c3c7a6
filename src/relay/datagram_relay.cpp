#include "relay/datagram_relay.h"

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "core/connection.h"
#include "core/worker.h"
#include "uringproxy/vless.h"

namespace up {

namespace {
void count_drop(Connection& c, UdpDrop why) {
  ++c.worker().stats().udp_dropped[static_cast<size_t>(why)];
}
}  // namespace

DatagramRelay::DatagramRelay(Connection& c, std::string to_target) : c_(c) {
  // Datagrams the client sent behind its header (at most the handshake buffer: it fits).
  up_len_ = static_cast<uint32_t>(std::min<size_t>(to_target.size(), buf_cap));
  std::memcpy(up_.get(), to_target.data(), up_len_);
}

void DatagramRelay::start() {
  pump_up();
  if (c_.closed()) return;
  read_down();
}

void DatagramRelay::pump_up() {
  for (;;) {
    std::span<const uint8_t> payload;
    size_t used = 0;
    if (vless::parse_datagram({up_.get() + up_off_, up_len_ - up_off_}, payload, used) !=
        vless::Parse::done) {
      // An incomplete datagram moves to the front; the buffer holds the largest one.
      std::memmove(up_.get(), up_.get() + up_off_, up_len_ - up_off_);
      up_len_ -= up_off_;
      up_off_ = 0;
      return c_.submit_recv(Side::client, reinterpret_cast<char*>(up_.get()) + up_len_,
                            buf_cap - up_len_);
    }
    up_off_ += static_cast<uint32_t>(used);
    auto len = static_cast<uint32_t>(payload.size());
    if (len == 0) {  // nothing to send (a zero-length send would look like no progress)
      count_drop(c_, UdpDrop::malformed);
      continue;
    }
    if (c_.bandwidth_allowance(true, len) == 0) {  // whole, on any room (as for SOCKS5 UDP)
      count_drop(c_, UdpDrop::limit);
      continue;
    }
    c_.bandwidth_consume(true, len);
    c_.touch();
    up_sending_ = len;
    return c_.submit_send(Side::target, reinterpret_cast<const char*>(payload.data()), len);
  }
}

void DatagramRelay::read_down() {
  c_.submit_recv(Side::target, reinterpret_cast<char*>(down_.get()) + 2, buf_cap - 2);
}

void DatagramRelay::on_recv(Side s, int res) {
  if (s == Side::client) {
    // The client's stream ending ends the tunnel: there is no half-close for datagrams.
    if (res < 0) return end_tunnel_on_error(c_, -res);
    if (res == 0) return c_.finish(Result::ok);
    up_len_ += static_cast<uint32_t>(res);
    return pump_up();
  }
  if (res < 0) {
    // A refused datagram (ICMP port unreachable) is the target's answer, not the tunnel's end.
    if (res == -ECONNREFUSED) {
      count_drop(c_, UdpDrop::error);
      return read_down();
    }
    return end_tunnel_on_error(c_, -res);
  }
  auto len = static_cast<uint32_t>(res);  // 0 is an empty datagram, not an end
  if (c_.bandwidth_allowance(false, len) == 0) {
    count_drop(c_, UdpDrop::limit);
    return read_down();
  }
  c_.bandwidth_consume(false, len);
  c_.touch();
  vless::encode_datagram_header(len, down_.get());
  c_.count_down(len);
  c_.count_datagram(false);
  ++c_.worker().stats().udp_datagrams_down;
  c_.submit_send(Side::client, reinterpret_cast<const char*>(down_.get()), len + 2);
}

bool DatagramRelay::on_send_error(Side s, int) {
  // A UDP send that failed (refused after an ICMP port unreachable, no route) loses that
  // datagram; the stream to the client failing ends the tunnel.
  if (s == Side::client) return false;
  count_drop(c_, UdpDrop::error);
  up_sending_ = 0;
  pump_up();
  return true;
}

void DatagramRelay::on_sent(Side s) {
  if (s == Side::client) return read_down();
  c_.count_up(up_sending_);
  c_.count_datagram(true);
  ++c_.worker().stats().udp_datagrams_up;
  up_sending_ = 0;
  pump_up();
}

}  // namespace up
