// How acp tells the operator where its consent channels are without handing a secret to the
// agent. acp's stderr is the agent's stderr too (inherited), so anything written there can be
// read back by the agent when it is a file (/proc/self/fd/2, or a log the operator redirected
// into the workspace) or a pipe the agent's tooling reads. A terminal is the one stream whose
// output the agent cannot read: the web page's token goes there and nowhere else.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace acp {

// Whether `fd` is a terminal: output written there is shown, not readable by the agent.
bool is_private_terminal(int fd);

// Prints one "<prefix><description>" line per channel on `out` (descriptions hold no secret,
// see SessionProxy::channel_descriptions), then, when `page_url` (the page's address with its
// token) is not empty: on a terminal, that address; otherwise how to open the page.
void print_consent_channels(std::FILE* out, bool terminal, const std::string& prefix,
                            const std::vector<std::string>& descriptions,
                            const std::string& page_url);

}  // namespace acp
