// The web channel's page: one self-contained HTML file (inline CSS and JavaScript, no build
// step, no external resources), compiled into the binary. See web_page.cpp.
#pragma once

#include <string_view>

namespace acp::consent {

std::string_view web_page_html();

}  // namespace acp::consent
