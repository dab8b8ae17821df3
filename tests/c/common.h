/* Shared helpers for the C tests (tests/c/run.sh builds and runs them). */
#ifndef TETHER_TEST_COMMON_H
#define TETHER_TEST_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tether.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define EXPECT_RC(expr, code)                                                              \
    do {                                                                                   \
        tether_result rc_ = (expr);                                                        \
        if (rc_ != (tether_result)(code)) {                                                \
            char m_[512] = "";                                                             \
            tether_last_error_message(m_, sizeof m_, NULL);                                \
            fprintf(stderr, "%s:%d: %s -> %s (expected %s): %s\n", __FILE__, __LINE__,     \
                    #expr, tether_result_str(rc_), tether_result_str(code), m_);           \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define OK(expr) EXPECT_RC(expr, TETHER_RESULT_OK)

static inline double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static inline void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Wait until *v >= target, at most timeout_ms. */
static inline int wait_for(atomic_int *v, int target, int timeout_ms) {
    double end = now_ms() + timeout_ms;
    while (atomic_load(v) < target) {
        if (now_ms() > end) return 0;
        sleep_ms(2);
    }
    return 1;
}

#define WAIT(v, target)                                                                   \
    do {                                                                                  \
        if (!wait_for(&(v), (target), 10000)) {                                           \
            fprintf(stderr, "%s:%d: timed out waiting for %s >= %d (is %d)\n", __FILE__,  \
                    __LINE__, #v, (int)(target), atomic_load(&(v)));                      \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static inline int thread_count(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0) n = atoi(line + 8);
    fclose(f);
    return n;
}

/* Counts userdata_free calls. */
static atomic_int g_freed;
static inline void count_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&g_freed, 1);
}

static inline void url_for(char *buf, size_t n, uint16_t port) {
    snprintf(buf, n, "http://127.0.0.1:%u", (unsigned)port);
}

/* A websocket-only client config (fast, deterministic). */
static inline tether_sio_client_config *ws_config(void) {
    tether_sio_client_config *c = NULL;
    OK(tether_sio_client_config_new(&c));
    OK(tether_sio_client_config_set_transports(c, TETHER_TRANSPORT_WEBSOCKET));
    return c;
}

#endif
