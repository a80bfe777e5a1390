// redact_url: the parts of a URL that carry credentials are hidden, the rest is kept so that
// the operator still sees where a channel points.
#include "acp/util/redact.hpp"

#include <gtest/gtest.h>

namespace {

using acp::util::redact_url;

TEST(UtilRedact, QueryValuesAreHiddenTheirNamesKept) {
  EXPECT_EQ(redact_url("http://127.0.0.1:8444/?token=0123abcd"), "http://127.0.0.1:8444/?token=…");
  EXPECT_EQ(redact_url("https://hooks.example/acp?key=s3cret&v=2"),
            "https://hooks.example/acp?key=…&v=…");
  EXPECT_EQ(redact_url("https://h/p?s3cret"), "https://h/p?…");
  EXPECT_EQ(redact_url("https://h/p?a=1&&b"), "https://h/p?a=…&&…");
}

TEST(UtilRedact, UserInfoAndFragmentAreHidden) {
  EXPECT_EQ(redact_url("https://user:pw@h:8443/x"), "https://…@h:8443/x");
  EXPECT_EQ(redact_url("https://a@b@h/x"), "https://…@h/x");
  EXPECT_EQ(redact_url("https://h/x#access_token=abc"), "https://h/x#…");
  EXPECT_EQ(redact_url("https://h/x?k=v#f"), "https://h/x?k=…#…");
  EXPECT_EQ(redact_url("https://u:p@h?k=v"), "https://…@h?k=…");
}

TEST(UtilRedact, AddressesWithoutCredentialsAreUnchanged) {
  for (const char* u : {"http://127.0.0.1:9/hooks/acp", "https://api.telegram.org", "https://h/",
                        "http://[::1]:8080/a/b", "", "not a url"})
    EXPECT_EQ(redact_url(u), u);
}

TEST(UtilRedact, NothingOfASecretSurvives) {
  const std::string secret = "Zm9vYmFyc2VjcmV0";
  for (const std::string& u :
       {"https://" + secret + "@h/", "https://u:" + secret + "@h/", "https://h/?t=" + secret,
        "https://h/?" + secret, "https://h/#" + secret, "https://h/?a=b&t=" + secret + "#x"})
    EXPECT_EQ(redact_url(u).find(secret), std::string::npos) << redact_url(u);
}

}  // namespace
