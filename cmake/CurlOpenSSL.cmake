# p11c_require_curl_openssl(LIBRARIES libs... INCLUDE_DIRS dirs...)
#
# Stops the configuration unless the libcurl in LIBRARIES does its TLS with
# OpenSSL (issue 16, docs/install in README.md "Building by hand").  The
# token key reaches libcurl as an OpenSSL SSL_CTX (CURLOPT_SSL_CTX_FUNCTION)
# and the shared-token bootstrap check is an OpenSSL verify callback; a
# libcurl on GnuTLS, NSS, wolfSSL... refuses or skips them.  Debian's
# libcurl4-gnutls-dev and libcurl4-openssl-dev cannot be installed side by
# side, and other -dev packages pull the GnuTLS one in.
#
# try_run builds cmake/curl_openssl_check.c, which compiles the library's
# own run-time check (src/lib/curlssl.c) and runs it against LIBRARIES.
# LIBRARIES must also hold libcrypto (OPENSSL_version_major).
function(p11c_require_curl_openssl)
  cmake_parse_arguments(A "" "" "LIBRARIES;INCLUDE_DIRS" ${ARGN})
  set(src ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/curl_openssl_check.c)
  set(lib_dir ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../src/lib)
  string(CONCAT why "p11cert needs libcurl built on OpenSSL: the token key enters the TLS handshake "
    "through CURLOPT_SSL_CTX_FUNCTION as an OpenSSL SSL_CTX, which libcurl on another TLS "
    "backend skips (requests would go out without the client certificate). On Debian and "
    "Ubuntu: apt-get install libcurl4-openssl-dev (it replaces libcurl4-gnutls-dev; "
    "scripts/setup tells what depends on that one first), then configure again.")
  if(CMAKE_CROSSCOMPILING)
    message(WARNING "cross-compiling: the libcurl TLS backend is not checked at configure time "
      "(libp11cert refuses a libcurl not on OpenSSL at run time). ${why}")
    return()
  endif()
  # run every time: the libcurl installed may have changed since last time
  unset(P11C_CURL_OPENSSL_RUN CACHE)
  unset(P11C_CURL_OPENSSL_COMPILE CACHE)
  try_run(P11C_CURL_OPENSSL_RUN P11C_CURL_OPENSSL_COMPILE
    ${CMAKE_BINARY_DIR}/CMakeFiles/p11c_curl_openssl ${src}
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${lib_dir};${A_INCLUDE_DIRS}"
    LINK_LIBRARIES ${A_LIBRARIES} Threads::Threads
    COMPILE_OUTPUT_VARIABLE compile_out
    RUN_OUTPUT_VARIABLE run_out)
  string(STRIP "${run_out}" run_out)
  string(REPLACE ";" " " libs "${A_LIBRARIES}")
  if(NOT P11C_CURL_OPENSSL_COMPILE)
    message(FATAL_ERROR "cannot build the libcurl TLS backend check against ${libs}:\n"
      "${compile_out}\n${why}")
  endif()
  if(NOT P11C_CURL_OPENSSL_RUN EQUAL 0)
    message(FATAL_ERROR "the libcurl found (${libs}) is not built on OpenSSL: ${run_out}\n${why}")
  endif()
  message(STATUS "libcurl TLS backend: ${run_out}")
endfunction()
