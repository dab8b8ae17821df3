/* 8 threads emitting at once: client emits and server broadcasts, nothing lost. */
#include "common.h"

#define THREADS 8
#define PER_THREAD 250

static tether_sio_client_socket *cs;
static tether_sio_server *srv;
static atomic_int server_got, client_got, errors;

static void on_tick(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    (void)ev;
    atomic_fetch_add(&server_got, 1);
}

static void on_news(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    (void)ev;
    atomic_fetch_add(&client_got, 1);
}

static void emit_retry(int client, int i) {
    char msg[64];
    int n = snprintf(msg, sizeof msg, "[%d]", i);
    for (;;) {
        tether_result rc = client ? tether_sio_client_socket_emit(cs, "tick", msg, (size_t)n, NULL, 0)
                                  : tether_sio_server_emit(srv, "/", NULL, "news", msg, (size_t)n, NULL, 0);
        if (rc == TETHER_RESULT_OK) return;
        if (rc != TETHER_RESULT_QUEUE_FULL && rc != TETHER_RESULT_DROPPED) {
            atomic_fetch_add(&errors, 1);
            return;
        }
        sleep_ms(1);
    }
}

static void *worker(void *p) {
    int k = (int)(intptr_t)p;
    for (int i = 0; i < PER_THREAD; i++) emit_retry(1, k * PER_THREAD + i);
    for (int i = 0; i < PER_THREAD / 5; i++) emit_retry(0, i);
    return NULL;
}

int main(void) {
    tether_runtime_options o = {4, TETHER_DELIVERY_RUNTIME_THREADS, false};
    tether_runtime *rt;
    OK(tether_runtime_new(&o, &rt));
    OK(tether_sio_server_new(rt, NULL, &srv));
    OK(tether_sio_server_on(srv, "/", "tick", on_tick, NULL, NULL));
    uint16_t port;
    OK(tether_sio_server_listen(srv, "127.0.0.1:0", &port));
    char url[64];
    url_for(url, sizeof url, port);
    tether_sio_client_config *cfg = ws_config();
    tether_sio_client *cl;
    OK(tether_sio_client_new(rt, url, cfg, &cl));
    tether_sio_client_config_free(cfg);
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    OK(tether_sio_client_socket_on(cs, "news", on_news, NULL, NULL));
    OK(tether_sio_client_socket_connect(cs, 5000));
    while (tether_sio_server_socket_count(srv, "/") < 1) sleep_ms(1);

    pthread_t t[THREADS];
    double t0 = now_ms();
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    WAIT(server_got, THREADS * PER_THREAD);
    WAIT(client_got, THREADS * (PER_THREAD / 5));
    printf("threads: %d + %d events from %d threads in %.0f ms\n", THREADS * PER_THREAD,
           THREADS * (PER_THREAD / 5), THREADS, now_ms() - t0);
    CHECK(atomic_load(&errors) == 0);
    OK(tether_runtime_shutdown(rt, 3000));
    tether_sio_client_socket_free(cs);
    tether_sio_client_free(cl);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
    printf("threads: ok\n");
    return 0;
}
