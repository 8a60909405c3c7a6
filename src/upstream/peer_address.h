#pragma once
// Socket addresses as a SOCKS5 BIND compares them (pure, no I/O): the one incoming connection
// a BIND accepts must come from the address its request named. A dual-stack socket reports
// IPv4 peers as v4-mapped IPv6, so addresses are compared as the IPv4 they carry.
#include <sys/socket.h>

#include <span>

#include "upstream/dns_cache.h"
#include "uringproxy/target.h"

namespace up {

// A v4-mapped IPv6 address (a dual-stack listener reached over IPv4) as plain IPv4, so a
// socket bound on it and the address a reply names speak the client's family.
void unmap_v4(sockaddr_storage& ss);

// Sets the port of an IPv4 or IPv6 address (host order in).
void set_port(sockaddr_storage& ss, uint16_t port);

// The same host, ports ignored: IPv4 and its v4-mapped IPv6 form are the same host.
bool same_host(const sockaddr* a, const sockaddr* b);

// May `peer` be a BIND's incoming connection? `named` holds the addresses the request named
// (resolved and allowed by the ACL); it must be one of them. The port is not compared: the
// peer's source port is its own choice (docs/wire.md#bind).
bool bind_peer_expected(const sockaddr* peer, std::span<const ResolvedAddress> named);

// A BIND naming 0.0.0.0 or :: (the client does not know who will connect) accepts any peer
// the ACL allows.
bool bind_names_any(const Target& named);

}  // namespace up
