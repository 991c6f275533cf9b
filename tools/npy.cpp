#include "tools/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

namespace tka::tools {
namespace {

Status bad(const std::string& path, const std::string& why) {
  return make_error(TKA_ERROR_INVALID_ARGUMENT, "{}: {}", path, why);
}

// The value of 'key' in the header dict, as its raw text up to the next top-level comma.
bool dict_value(const std::string& header, const std::string& key, std::string* value) {
  const std::regex re("['\"]" + key + "['\"]\\s*:\\s*(\\([^)]*\\)|'[^']*'|\"[^\"]*\"|True|False)");
  std::smatch m;
  if (!std::regex_search(header, m, re)) return false;
  *value = m[1].str();
  return true;
}

}  // namespace

int64_t NpyArray::count() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Status read_npy(const std::string& path, NpyArray* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad(path, "cannot be opened");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) return bad(path, "not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) return bad(path, "truncated header");
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) return bad(path, "truncated header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    return bad(path, "unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > (1u << 20)) return bad(path, "header too long");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return bad(path, "truncated header");
  std::string descr, fortran, shape;
  if (!dict_value(header, "descr", &descr) || !dict_value(header, "fortran_order", &fortran) ||
      !dict_value(header, "shape", &shape))
    return bad(path, "header lacks descr, fortran_order or shape");
  descr = descr.substr(1, descr.size() - 2);
  if (descr == "|f2" || descr == "=f2") descr = "<f2";
  if (descr == "=f4") descr = "<f4";
  if (descr == "=i4") descr = "<i4";
  if (descr == "=i8") descr = "<i8";
  if (descr != "<f4" && descr != "<f2" && descr != "<i4" && descr != "<i8")
    return bad(path, "dtype '" + descr + "' is not supported (little-endian float32, float16, int32, int64)");
  if (fortran != "False") return bad(path, "Fortran-ordered arrays are not supported (save a C-ordered copy)");
  out->descr = descr;
  out->shape.clear();
  static const std::regex dim("\\d+");
  for (std::sregex_iterator it(shape.begin(), shape.end(), dim), end; it != end; ++it)
    out->shape.push_back(std::stoll(it->str()));
  for (int64_t s : out->shape)
    if (s > (int64_t{1} << 40)) return bad(path, "shape too large");
  const int64_t bytes = out->count() * out->elem_size();
  const std::streampos at = in.tellg();
  in.seekg(0, std::ios::end);
  const int64_t left = static_cast<int64_t>(in.tellg() - at);
  in.seekg(at);
  if (left < bytes)
    return bad(path, "truncated data: the shape needs " + std::to_string(bytes) + " bytes, the file holds " +
                         std::to_string(left));
  out->data.resize(static_cast<size_t>(bytes));
  if (bytes > 0 && !in.read(reinterpret_cast<char*>(out->data.data()), bytes))
    return bad(path, "truncated data: expected " + std::to_string(bytes) + " bytes");
  return Status::ok();
}

Status write_npy(const std::string& path, const NpyArray& a) {
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i)
    shape += std::to_string(a.shape[i]) + (a.shape.size() == 1 ? "," : i + 1 < a.shape.size() ? ", " : "");
  shape += ")";
  std::string header = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return bad(path, "cannot be written");
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(a.data.data()), static_cast<std::streamsize>(a.data.size()));
  return out ? Status::ok() : bad(path, "write failed");
}

}  // namespace tka::tools
