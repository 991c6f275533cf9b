// The one error type inside the library: a public status code plus a message that names the bad
// field or the failed step. The C API turns it into a return code and tka_last_error().
#pragma once

#include <fmt/format.h>

#include <string>
#include <utility>

#include "topkattn/topkattn.h"

namespace tka {

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(tka_status code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  bool is_ok() const { return code_ == TKA_SUCCESS; }
  explicit operator bool() const { return is_ok(); }
  tka_status code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  tka_status code_ = TKA_SUCCESS;
  std::string message_;
};

template <typename... Args>
Status make_error(tka_status code, fmt::format_string<Args...> format, Args&&... args) {
  return Status(code, fmt::format(format, std::forward<Args>(args)...));
}

// Descriptor checks: `invalid("top_k", why)` gives TKA_ERROR_INVALID_ARGUMENT "select.top_k: why",
// so every message names the field it rejects. One per op: `constexpr FieldError invalid{"select"};`.
struct FieldError {
  const char* op;
  Status operator()(const char* field, const std::string& why) const {
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "{}.{}: {}", op, field, why);
  }
};

}  // namespace tka

#define TKA_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::tka::Status tka_status_ = (expr);           \
    if (!tka_status_.is_ok()) return tka_status_; \
  } while (0)
