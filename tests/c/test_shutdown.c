/* Shutdown with callbacks in flight returns within its timeout, and no callback runs
 * after it returned. */
#include "common.h"

static atomic_int started, running, finished;
static int hold_ms;

static void on_slow(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    (void)ev;
    atomic_fetch_add(&started, 1);
    atomic_fetch_add(&running, 1);
    sleep_ms(hold_ms);
    atomic_fetch_sub(&running, 1);
    atomic_fetch_add(&finished, 1);
}

static atomic_int closed_events, late_acks;
static void lifecycle(void *ud, tether_sio_client_socket *s, const tether_sio_client_event *ev) {
    (void)ud;
    (void)s;
    if (ev->kind == TETHER_SIO_CLIENT_EVENT_KIND_CLOSED) atomic_fetch_add(&closed_events, 1);
}
static void on_ack(void *ud, tether_result st, const tether_sio_args *r) {
    (void)ud;
    (void)r;
    /* pending acks get a final answer during shutdown, never after */
    CHECK(st == TETHER_RESULT_SHUT_DOWN || st == TETHER_RESULT_DISCONNECTED || st == TETHER_RESULT_TIMEOUT);
    atomic_fetch_add(&late_acks, 1);
}

static void run(int hold, uint32_t timeout_ms, tether_result expect) {
    atomic_store(&started, 0);
    atomic_store(&finished, 0);
    atomic_store(&closed_events, 0);
    atomic_store(&late_acks, 0);
    hold_ms = hold;
    tether_runtime *rt;
    OK(tether_runtime_new(NULL, &rt));
    tether_sio_server *srv;
    OK(tether_sio_server_new(rt, NULL, &srv));
    OK(tether_sio_server_on(srv, "/", "slow", on_slow, NULL, NULL));
    uint16_t port;
    OK(tether_sio_server_listen(srv, "127.0.0.1:0", &port));
    char url[64];
    url_for(url, sizeof url, port);
    tether_sio_client_config *cfg = ws_config();
    tether_sio_client *cl;
    OK(tether_sio_client_new(rt, url, cfg, &cl));
    tether_sio_client_config_free(cfg);
    OK(tether_sio_client_on_lifecycle(cl, lifecycle, NULL, NULL));
    tether_sio_client_socket *cs;
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    OK(tether_sio_client_socket_connect(cs, 5000));
    for (int i = 0; i < 5; i++) OK(tether_sio_client_socket_emit(cs, "slow", NULL, 0, NULL, 0));
    /* an ack that will never come (no handler): it must be answered during shutdown */
    OK(tether_sio_client_socket_emit_with_ack(cs, "nobody", NULL, 0, NULL, 0, 60000, on_ack, NULL));
    WAIT(started, 1);

    double t0 = now_ms();
    EXPECT_RC(tether_runtime_shutdown(rt, timeout_ms), expect);
    double took = now_ms() - t0;
    int after = atomic_load(&started);
    printf("shutdown(%u ms) with a %d ms callback in flight: %.0f ms, %s\n", timeout_ms, hold, took,
           tether_result_str(expect));
    CHECK(took < timeout_ms + 300);
    if (expect == TETHER_RESULT_OK) {
        CHECK(atomic_load(&running) == 0);    /* it waited for the running callback */
        CHECK(atomic_load(&closed_events) == 1); /* the client's final event came */
        CHECK(atomic_load(&late_acks) == 1);  /* and the pending ack's */
    }
    sleep_ms(hold + 200);
    CHECK(atomic_load(&started) == after); /* nothing started after shutdown returned */
    CHECK(atomic_load(&late_acks) <= 1);
    tether_sio_client_socket_free(cs);
    tether_sio_client_free(cl);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
}

int main(void) {
    run(200, 2000, TETHER_RESULT_OK);       /* waits for the running callback */
    run(800, 150, TETHER_RESULT_TIMEOUT);   /* gives up in time; nothing new starts */
    printf("shutdown: ok\n");
    return 0;
}
