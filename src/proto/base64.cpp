// Table-driven base64; small enough that OpenSSL's EVP_DecodeBlock (which pads its output
// with zero bytes and accepts whitespace) is not worth its quirks here.
#include "proto/base64.h"

#include <array>
#include <cstdint>

namespace up::base64 {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_reverse() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(alphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> reverse = make_reverse();

}  // namespace

std::string encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(in[k])); };
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += alphabet[v & 63];
  }
  size_t left = in.size() - i;
  if (left == 1) {
    uint32_t v = byte(i) << 16;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += "==";
  } else if (left == 2) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += '=';
  }
  return out;
}

bool decode(std::string_view in, std::string& out) {
  out.clear();
  size_t pad = 0;
  if (!in.empty() && in.back() == '=') {
    pad = (in.size() >= 2 && in[in.size() - 2] == '=') ? 2 : 1;
    if (in.size() % 4 != 0) return false;
    in.remove_suffix(pad);
  }
  if (in.size() % 4 == 1) return false;
  out.reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int8_t v = reverse[static_cast<uint8_t>(c)];
    if (v < 0) return false;
    acc = (acc << 6 | static_cast<uint32_t>(v)) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(acc >> bits & 0xff);
    }
  }
  // Padding, explicit or implied, must match what the data length leaves over.
  if (pad != 0 && (in.size() + pad) % 4 != 0) return false;
  return true;
}

}  // namespace up::base64
