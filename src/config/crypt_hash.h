#pragma once
// Whether a users.json password is a crypt(3) hash (docs/configuration.md#usersjson). Only the shape is checked here;
// verification is libcrypt's job, off the workers.
#include <string>

namespace up::config {

// True for yescrypt ($y$), gost-yescrypt ($gy$), scrypt ($7$), bcrypt ($2a$/$2b$/$2y$),
// sha512-crypt ($6$) and sha256-crypt ($5$) strings of a sane shape.
bool is_crypt_hash(const std::string& s);

}  // namespace up::config
