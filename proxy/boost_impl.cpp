// The one translation unit that compiles Boost.Asio's and Boost.Beast's non-template code
// (BOOST_ASIO_SEPARATE_COMPILATION and BOOST_BEAST_SEPARATE_COMPILATION, set on the acp_asio
// library for every user: proxy/CMakeLists.txt). Without them each of the ~70 files that include
// Asio or Beast compiled that code again: proxy_connection.cpp took 81 s of CPU at -O2 against 67 s
// with them.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
