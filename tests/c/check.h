/* Checking macros shared by the C test programs (tests/c/ and tests/c/compat/). Each program
 * includes its header (the current one or an old one) before this file. */
#ifndef FT_TEST_CHECK_H
#define FT_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int failures = 0;

#define CHECK(call)                                                                        \
  do {                                                                                     \
    ft_status s_ = (call);                                                                 \
    if (s_ != FT_OK) {                                                                     \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,                  \
              ft_status_name(s_), ft_last_error());                                        \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

#define EXPECT(cond)                                                                       \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                  \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

/* The call must fail with `want` and leave a non-empty message. */
#define EXPECT_STATUS(call, want)                                                          \
  do {                                                                                     \
    ft_status s_ = (call);                                                                 \
    if (s_ != (want)) {                                                                    \
      fprintf(stderr, "%s:%d: %s -> %s, expected %s (%s)\n", __FILE__, __LINE__, #call,    \
              ft_status_name(s_), ft_status_name(want), ft_last_error());                  \
      failures++;                                                                          \
    } else if (ft_last_error()[0] == '\0') {                                               \
      fprintf(stderr, "%s:%d: %s gave no error message\n", __FILE__, __LINE__, #call);     \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

#endif
