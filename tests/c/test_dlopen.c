/* 100 cycles in one process: dlopen libtether.so -> runtime + server + client exchange
 * messages -> shutdown -> dlclose. No crash, and no thread left behind.
 *
 *   ./test_dlopen /path/to/libtether.so [cycles]
 */
#include <dlfcn.h>

#include "common.h"

#define SYM(name) __typeof__(&name) name##_p
struct api {
    SYM(tether_runtime_new); SYM(tether_runtime_shutdown); SYM(tether_runtime_free);
    SYM(tether_sio_server_new); SYM(tether_sio_server_on); SYM(tether_sio_server_listen);
    SYM(tether_sio_server_free); SYM(tether_ack_send); SYM(tether_sio_client_new);
    SYM(tether_sio_client_socket_new); SYM(tether_sio_client_socket_connect);
    SYM(tether_sio_client_socket_emit_with_ack); SYM(tether_sio_client_socket_free);
    SYM(tether_sio_client_free); SYM(tether_sio_client_config_new);
    SYM(tether_sio_client_config_set_transports); SYM(tether_sio_client_config_free);
};
static struct api A;

static void on_ping(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    A.tether_ack_send_p(ev->ack, ev->args.json.data, ev->args.json.len, NULL, 0);
}

static atomic_int replies;
static void on_reply(void *ud, tether_result st, const tether_sio_args *r) {
    (void)ud;
    if (st == TETHER_RESULT_OK && strcmp(r->json.data, "[\"ping\"]") == 0) atomic_fetch_add(&replies, 1);
}

#define LOAD(h, name)                                                       \
    do {                                                                    \
        *(void **)(&A.name##_p) = dlsym(h, #name);                          \
        if (!A.name##_p) {                                                  \
            fprintf(stderr, "dlsym %s: %s\n", #name, dlerror());            \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s libtether.so [cycles]\n", argv[0]);
        return 2;
    }
    int cycles = argc > 2 ? atoi(argv[2]) : 100;
    int base = thread_count();
    double t0 = now_ms();
    for (int c = 0; c < cycles; c++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        LOAD(h, tether_runtime_new); LOAD(h, tether_runtime_shutdown); LOAD(h, tether_runtime_free);
        LOAD(h, tether_sio_server_new); LOAD(h, tether_sio_server_on); LOAD(h, tether_sio_server_listen);
        LOAD(h, tether_sio_server_free); LOAD(h, tether_ack_send); LOAD(h, tether_sio_client_new);
        LOAD(h, tether_sio_client_socket_new); LOAD(h, tether_sio_client_socket_connect);
        LOAD(h, tether_sio_client_socket_emit_with_ack); LOAD(h, tether_sio_client_socket_free);
        LOAD(h, tether_sio_client_free); LOAD(h, tether_sio_client_config_new);
        LOAD(h, tether_sio_client_config_set_transports); LOAD(h, tether_sio_client_config_free);

        tether_runtime *rt;
        tether_runtime_options o = {2, TETHER_DELIVERY_RUNTIME_THREADS, false};
        CHECK(A.tether_runtime_new_p(&o, &rt) == TETHER_RESULT_OK);
        tether_sio_server *srv;
        CHECK(A.tether_sio_server_new_p(rt, NULL, &srv) == TETHER_RESULT_OK);
        CHECK(A.tether_sio_server_on_p(srv, "/", "ping", on_ping, NULL, NULL) == TETHER_RESULT_OK);
        uint16_t port;
        CHECK(A.tether_sio_server_listen_p(srv, "127.0.0.1:0", &port) == TETHER_RESULT_OK);
        char url[64];
        url_for(url, sizeof url, port);
        tether_sio_client_config *cfg;
        CHECK(A.tether_sio_client_config_new_p(&cfg) == TETHER_RESULT_OK);
        CHECK(A.tether_sio_client_config_set_transports_p(cfg, c % 2 ? TETHER_TRANSPORT_WEBSOCKET
                                                                      : TETHER_TRANSPORT_POLLING) == TETHER_RESULT_OK);
        tether_sio_client *cl;
        CHECK(A.tether_sio_client_new_p(rt, url, cfg, &cl) == TETHER_RESULT_OK);
        A.tether_sio_client_config_free_p(cfg);
        tether_sio_client_socket *cs;
        CHECK(A.tether_sio_client_socket_new_p(cl, NULL, &cs) == TETHER_RESULT_OK);
        CHECK(A.tether_sio_client_socket_connect_p(cs, 5000) == TETHER_RESULT_OK);
        int want = atomic_load(&replies) + 3;
        for (int i = 0; i < 3; i++)
            CHECK(A.tether_sio_client_socket_emit_with_ack_p(cs, "ping", "[\"ping\"]", 8, NULL, 0, 5000,
                                                            on_reply, NULL) == TETHER_RESULT_OK);
        WAIT(replies, want);
        CHECK(A.tether_runtime_shutdown_p(rt, 3000) == TETHER_RESULT_OK);
        A.tether_sio_client_socket_free_p(cs);
        A.tether_sio_client_free_p(cl);
        A.tether_sio_server_free_p(srv);
        A.tether_runtime_free_p(rt);
        CHECK(dlclose(h) == 0);
        /* every thread the library started is gone */
        double end = now_ms() + 2000;
        while (thread_count() > base && now_ms() < end) sleep_ms(1);
        if (thread_count() != base) {
            fprintf(stderr, "cycle %d: %d threads, expected %d\n", c, thread_count(), base);
            return 1;
        }
    }
    printf("dlopen: %d cycles in %.0f ms, threads back to %d\n", cycles, now_ms() - t0, base);
    printf("dlopen: ok\n");
    return 0;
}
