#pragma once
// The reverse agents' wire protocol (docs/agent-protocol.md): pure parser and encoder, no I/O.
// Frame: TYPE(1) LENGTH(2, big-endian) BODY(LENGTH). parse_message() is given everything
// buffered so far (any split, one byte at a time included) and says need_more, done (with the
// bytes consumed and the decoded message) or error (with why, for the log and the ERROR frame).
// Which message a connection's state allows is the caller's check, not the parser's.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "uringproxy/target.h"

namespace up::agent {

constexpr uint8_t protocol_version = 1;
constexpr size_t header_size = 3;
constexpr size_t max_body = 512;
constexpr size_t max_frame = header_size + max_body;
constexpr size_t max_id = 64;
constexpr size_t max_secret = 255;
constexpr size_t max_software = 64;
constexpr size_t max_error_text = 255;
constexpr uint32_t min_heartbeat_ms = 1000;
constexpr uint32_t max_heartbeat_ms = 3600000;

enum class Type : uint8_t {
  hello = 0x01,
  auth_result = 0x02,
  ping = 0x03,
  pong = 0x04,
  tunnel = 0x05,
  status = 0x06,
  error = 0x07,
};

enum class Role : uint8_t { control = 1, reverse = 2 };

enum class AuthCode : uint8_t {
  ok = 0,
  denied = 1,  // unknown id, wrong secret, disabled: alike on purpose
  unsupported_version = 2,
  throttled = 3,
  no_control = 4,
};

// SOCKS5 reply codes (RFC 1928), so the gateway answers users as for an upstream.
enum class Status : uint8_t {
  connected = 0x00,
  general_failure = 0x01,
  denied_by_acl = 0x02,
  network_unreachable = 0x03,
  host_unreachable = 0x04,
  refused = 0x05,
  timeout = 0x06,
  address_type_not_supported = 0x08,
};

enum class ErrorCode : uint8_t {
  protocol_error = 1,
  unexpected_message = 2,
  heartbeat_timeout = 3,
  replaced = 4,
  removed = 5,
  shutting_down = 6,
};

struct Hello {
  uint8_t version = protocol_version;  // the highest the agent speaks
  Role role = Role::control;
  std::string id;
  std::string secret;
  std::string software;
};
struct AuthResult {
  AuthCode code = AuthCode::ok;
  uint8_t version = protocol_version;
  uint32_t heartbeat_ms = 0;  // min..max_heartbeat_ms when ok, else 0
};
struct Ping {
  uint64_t nonce = 0;
};
struct Pong {
  uint64_t nonce = 0;
};
struct Tunnel {
  uint64_t tunnel_id = 0;  // never 0
  Target target;
};
struct TunnelStatus {
  uint64_t tunnel_id = 0;
  Status code = Status::general_failure;
};
struct ErrorFrame {
  ErrorCode code = ErrorCode::protocol_error;
  std::string text;  // printable ASCII, for the peer's log
};

using Message = std::variant<Hello, AuthResult, Ping, Pong, Tunnel, TunnelStatus, ErrorFrame>;
Type type_of(const Message& m);

enum class Parse : uint8_t { need_more, done, error };

enum class Error : uint8_t {
  none,
  bad_type,        // unknown TYPE byte
  bad_length,      // LENGTH outside the type's bounds
  bad_magic,       // HELLO without "UPAG": not an agent
  bad_field,       // a field with a value the protocol does not allow
  bad_string,      // a string running past the body, or with forbidden bytes
  trailing_bytes,  // the body is longer than its fields
};
// "unknown frame type" etc., for the log and the ERROR frame's text.
const char* error_text(Error e);

// Checks the type on the first byte and the length on the third, so garbage is refused before
// the body is waited for. On need_more and error, consumed is 0 and `out` is unspecified.
Parse parse_message(std::span<const uint8_t> in, Message& out, size_t& consumed, Error& error);

// The whole frame into `out` (max_frame bytes); returns its length, or 0 when a field cannot be
// encoded (a string too long or with forbidden bytes, an id that is not an agent id, a tunnel
// id of 0, a code outside its enum, a heartbeat out of bounds).
size_t encode(const Message& m, uint8_t* out);

// An agent id: 1-64 letters, digits, '-', '_', '.' (the agents_file loader uses it too).
bool valid_agent_id(std::string_view id);

// What a user is answered when an agent's STATUS is not `connected` (as for an upstream).
uint8_t socks_reply(Status s);
int http_status(Status s);

const char* status_text(Status s);         // "refused by the agent's ACL"
const char* auth_code_text(AuthCode c);    // "denied"
const char* error_code_text(ErrorCode c);  // "heartbeat_timeout"

}  // namespace up::agent
