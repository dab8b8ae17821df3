/* Host poll: callbacks run only inside tether_runtime_dispatch, on the calling thread;
 * max_events and the time budget are honoured. */
#include "common.h"

static pthread_t main_thread;
static atomic_int events, wrong_thread_calls;
static int sleep_per_event_ms;

static void on_tick(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    (void)ev;
    if (!pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&wrong_thread_calls, 1);
    if (sleep_per_event_ms) sleep_ms(sleep_per_event_ms);
    atomic_fetch_add(&events, 1);
}

int main(void) {
    main_thread = pthread_self();
    tether_runtime_options o = {2, TETHER_DELIVERY_HOST_POLL, false};
    tether_runtime *rt;
    OK(tether_runtime_new(&o, &rt));
    tether_sio_server *srv;
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
    tether_sio_client_socket *cs;
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    OK(tether_sio_client_socket_connect(cs, 5000));

    /* nothing queued: a 0 budget returns at once, a 50 ms budget waits about that long */
    size_t ran = 99;
    OK(tether_runtime_dispatch(rt, 100, 0, &ran)); /* drain connection events */
    double t0 = now_ms();
    OK(tether_runtime_dispatch(rt, 100, 0, &ran));
    CHECK(ran == 0 && now_ms() - t0 < 20);
    t0 = now_ms();
    OK(tether_runtime_dispatch(rt, 100, 50, &ran));
    double took = now_ms() - t0;
    CHECK(ran == 0);
    CHECK(took >= 45 && took < 250);

    /* 30 events queue up without dispatch: no callback runs meanwhile */
    for (int i = 0; i < 30; i++) OK(tether_sio_client_socket_emit(cs, "tick", NULL, 0, NULL, 0));
    double end = now_ms() + 5000;
    while (tether_runtime_pending(rt) < 30 && now_ms() < end) sleep_ms(2);
    CHECK(tether_runtime_pending(rt) == 30);
    CHECK(atomic_load(&events) == 0);
    /* max_events */
    OK(tether_runtime_dispatch(rt, 10, 0, &ran));
    CHECK(ran == 10 && atomic_load(&events) == 10);
    /* time budget: 5 ms per callback, 22 ms budget: stops early */
    sleep_per_event_ms = 5;
    t0 = now_ms();
    OK(tether_runtime_dispatch(rt, 1000, 22, &ran));
    took = now_ms() - t0;
    CHECK(ran >= 3 && ran <= 6);
    CHECK(took < 22 + 5 + 30);
    sleep_per_event_ms = 0;
    /* the rest */
    while (atomic_load(&events) < 30 && now_ms() < end) OK(tether_runtime_dispatch(rt, 1000, 10, NULL));
    CHECK(atomic_load(&events) == 30);
    CHECK(atomic_load(&wrong_thread_calls) == 0);

    OK(tether_runtime_shutdown(rt, 3000));
    EXPECT_RC(tether_runtime_dispatch(rt, 1, 0, NULL), TETHER_RESULT_SHUT_DOWN);
    tether_sio_client_socket_free(cs);
    tether_sio_client_free(cl);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
    printf("host_poll: ok\n");
    return 0;
}
