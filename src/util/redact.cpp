#include "acp/util/redact.hpp"

namespace acp::util {
namespace {

constexpr std::string_view kHidden = "…";

// "a=1&b&c=3" -> "a=…&…&c=…"
std::string redact_query(std::string_view query) {
  std::string out;
  for (size_t start = 0; start <= query.size();) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view part = query.substr(start, end - start);
    if (start > 0) out += '&';
    if (auto eq = part.find('='); eq != std::string_view::npos)
      out.append(part.substr(0, eq + 1)).append(kHidden);
    else if (!part.empty())
      out.append(kHidden);
    start = end + 1;
  }
  return out;
}

}  // namespace

std::string redact_url(std::string_view url) {
  std::string out;
  size_t authority = url.find("://");
  authority = authority == std::string_view::npos ? 0 : authority + 3;
  size_t path = url.find_first_of("/?#", authority);
  if (path == std::string_view::npos) path = url.size();
  out.append(url.substr(0, authority));
  std::string_view host = url.substr(authority, path - authority);
  if (auto at = host.rfind('@'); at != std::string_view::npos) {
    out.append(kHidden);
    host.remove_prefix(at);
  }
  out.append(host);
  size_t query = url.find_first_of("?#", path);
  if (query == std::string_view::npos) query = url.size();
  out.append(url.substr(path, query - path));
  if (query < url.size() && url[query] == '?') {
    size_t fragment = url.find('#', query);
    if (fragment == std::string_view::npos) fragment = url.size();
    out += '?';
    out += redact_query(url.substr(query + 1, fragment - query - 1));
    query = fragment;
  }
  if (query < url.size()) out.append("#").append(kHidden);
  return out;
}

}  // namespace acp::util
