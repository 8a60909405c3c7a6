// The small field forms: socket addresses, host:port, ACL entries, edit distance
// (src/config/socket_address.cpp, host_port.cpp, acl_syntax.cpp, json_reader.cpp).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include "config/acl_syntax.h"
#include "config/host_port.h"
#include "config/json_reader.h"
#include "uringproxy/config.h"

using namespace up;

TEST_CASE("config syntax: parse_socket_address") {
  SocketAddress a;
  REQUIRE(parse_socket_address("127.0.0.1:1080", a));
  CHECK(a.addr.ss_family == AF_INET);
  CHECK(a.len == sizeof(sockaddr_in));
  CHECK(ntohs(reinterpret_cast<sockaddr_in&>(a.addr).sin_port) == 1080);
  CHECK(a.text == "127.0.0.1:1080");
  REQUIRE(parse_socket_address("[::1]:65535", a));
  CHECK(a.addr.ss_family == AF_INET6);
  CHECK(a.len == sizeof(sockaddr_in6));
  CHECK(ntohs(reinterpret_cast<sockaddr_in6&>(a.addr).sin6_port) == 65535);
  CHECK(parse_socket_address("0.0.0.0:1", a));
  CHECK(parse_socket_address("[::]:443", a));
  CHECK(parse_socket_address("[::ffff:1.2.3.4]:443", a));
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:99999", "127.0.0.1:+80", "127.0.0.1:8 0", "::1:80", "[::1]",
                          "[::1]80", "[::1]:", "localhost:80", "256.0.0.1:80", "1.2.3:80",
                          "[127.0.0.1]:80", "127.0.0.1:080000", " 127.0.0.1:80"}) {
    INFO(bad);
    CHECK(!parse_socket_address(bad, a));
  }
  CHECK(!parse_socket_address(std::string("1.2.3.4\0:80", 11), a));
}

TEST_CASE("config syntax: host:port and DNS servers") {
  using config::is_host_port;
  CHECK(is_host_port("example.com:443"));
  CHECK(is_host_port("10.0.0.1:80"));
  CHECK(is_host_port("[2001:db8::1]:80"));
  CHECK(!is_host_port("example.com"));
  CHECK(!is_host_port("example.com:0"));
  CHECK(!is_host_port(":80"));
  CHECK(!is_host_port("exa mple.com:80"));
  CHECK(config::is_host_name("a-b.c_d.example"));
  CHECK(!config::is_host_name("-a.example"));
  CHECK(!config::is_host_name("a..b"));
  CHECK(!config::is_host_name("999.1.1.1"));
  CHECK(!config::is_host_name(std::string(64, 'a') + ".com"));
  SocketAddress s;
  CHECK(config::parse_dns_server("[::1]", s));
  CHECK(ntohs(reinterpret_cast<sockaddr_in6&>(s.addr).sin6_port) == 53);
  CHECK(!config::parse_dns_server("::1:53:x", s));
}

TEST_CASE("config syntax: ACL entries") {
  using config::check_acl_entry;
  for (const char* good : {"10.0.0.0/8", "0.0.0.0/0", "192.168.1.1/32", "::/0", "fc00::/7",
                           "2001:db8::/32", "example.com", "*.example.com", "1.2.3.4", "::1",
                           "localhost"}) {
    INFO(good);
    CHECK(check_acl_entry(good) == "");
  }
  CHECK(check_acl_entry("10.0.0.0/33").find("out of range (0..32)") != std::string::npos);
  CHECK(check_acl_entry("::/129").find("out of range (0..128)") != std::string::npos);
  CHECK(check_acl_entry("10.0.0.0/").find("prefix length must be a number") != std::string::npos);
  CHECK(check_acl_entry("10.0.0.0/x").find("prefix length must be a number") != std::string::npos);
  CHECK(check_acl_entry("host/8").find("is not an IP address") != std::string::npos);
  CHECK(check_acl_entry("192.168.1.1/24").find("did you mean \"192.168.1.0/24\"?") != std::string::npos);
  CHECK(check_acl_entry("2001:db8::1/32").find("did you mean \"2001:db8::/32\"?") != std::string::npos);
  CHECK(check_acl_entry("*example.com").find("only allowed as a leading") != std::string::npos);
  CHECK(check_acl_entry("*.").find("is not a host name suffix") != std::string::npos);
  CHECK(check_acl_entry("a.*.com") != "");
  CHECK(check_acl_entry("") != "");
  CHECK(check_acl_entry("exa mple.com") != "");
}

TEST_CASE("config syntax: edit distance for suggestions") {
  using config::edit_distance;
  CHECK(edit_distance("workers", "workers", 2) == 0);
  CHECK(edit_distance("workrs", "workers", 2) == 1);
  CHECK(edit_distance("wrokers", "workers", 2) == 2);
  CHECK(edit_distance("abc", "xyz", 2) == 3);
  CHECK(edit_distance("", "abcdef", 2) == 3);
}
