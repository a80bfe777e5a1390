#include "acp/session/channel_notice.hpp"

#include <unistd.h>

namespace acp {

bool is_private_terminal(int fd) {
  return ::isatty(fd) == 1;
}

void print_consent_channels(std::FILE* out, bool terminal, const std::string& prefix,
                            const std::vector<std::string>& descriptions,
                            const std::string& page_url) {
  for (const auto& d : descriptions) std::fprintf(out, "%s%s\n", prefix.c_str(), d.c_str());
  if (page_url.empty()) return;
  if (terminal) {
    std::fprintf(out, "%sopen the consent page (shown on this terminal only): %s\n", prefix.c_str(),
                 page_url.c_str());
    return;
  }
  std::fprintf(out,
               "%sthe consent page's token is shown only when acp's stderr is a terminal (this "
               "stream is the agent's too): add ?token= and the token file's content to the "
               "page's address above\n",
               prefix.c_str());
}

}  // namespace acp
