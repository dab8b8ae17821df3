/* Callbacks call the API re-entrantly: emit, join, broadcast, ack, disconnect, close,
 * and free the object that is dispatching (deferred, not a crash). */
#include "common.h"

static tether_sio_server *srv;
static tether_sio_client *cl;
static atomic_int got_room, got_ack, disconnected, closed, srv_freed, wrong_thread;
static bool single; /* the runtime is single-threaded */

static void on_hello(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    OK(tether_sio_socket_join(s, "room"));
    const char *rooms[] = {"room"};
    tether_sio_target t = {rooms, 1, NULL, 0, NULL, false};
    OK(tether_sio_server_emit(srv, "/", &t, "room-msg", "[\"in room\"]", 11, NULL, 0));
    OK(tether_sio_socket_emit(s, "direct", NULL, 0, NULL, 0));
    OK(tether_ack_send(ev->ack, "[\"ok\"]", 6, NULL, 0));
    OK(tether_sio_socket_leave(s, "room"));
    if (single) {
        /* On a single-threaded runtime's own thread, a call that waits for the runtime
         * is refused instead of waiting for itself. */
        tether_sio_server *other = NULL;
        tether_runtime *rt = ud;
        OK(tether_sio_server_new(rt, NULL, &other));
        uint16_t p = 0;
        EXPECT_RC(tether_sio_server_listen(other, "127.0.0.1:0", &p), TETHER_RESULT_WRONG_THREAD);
        tether_sio_server_free(other);
        atomic_fetch_add(&wrong_thread, 1);
    }
}

static void on_bye(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    (void)ev;
    /* Free the server from its own callback: the release is deferred. */
    tether_sio_server_free(srv);
    atomic_fetch_add(&srv_freed, 1);
}

static void c_room(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)ev;
    atomic_fetch_add(&got_room, 1);
    /* blocking connect from a callback is refused, not a deadlock */
    EXPECT_RC(tether_sio_client_socket_connect(s, 1000), TETHER_RESULT_WRONG_THREAD);
    atomic_fetch_add(&wrong_thread, 1);
    /* emit from inside a callback */
    OK(tether_sio_client_socket_emit(s, "bye", NULL, 0, NULL, 0));
}

static void c_ack(void *ud, tether_result st, const tether_sio_args *r) {
    (void)ud;
    CHECK(st == TETHER_RESULT_OK && strcmp(r->json.data, "[\"ok\"]") == 0);
    atomic_fetch_add(&got_ack, 1);
}

static void lifecycle(void *ud, tether_sio_client_socket *s, const tether_sio_client_event *ev) {
    tether_runtime *rt = ud;
    (void)s;
    if (ev->kind == TETHER_SIO_CLIENT_EVENT_KIND_DISCONNECT) {
        atomic_fetch_add(&disconnected, 1);
        EXPECT_RC(tether_runtime_dispatch(rt, 1, 0, NULL), TETHER_RESULT_WRONG_MODE);
        /* Free the client from its own callback. */
        tether_sio_client_free(cl);
    }
    if (ev->kind == TETHER_SIO_CLIENT_EVENT_KIND_CLOSED) atomic_fetch_add(&closed, 1);
}

static void poll_reentry(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    tether_runtime *rt = ud;
    (void)s;
    (void)ev;
    EXPECT_RC(tether_runtime_dispatch(rt, 1, 0, NULL), TETHER_RESULT_WRONG_THREAD);
    atomic_fetch_add(&got_room, 100);
}

/* Emit, join, ack, disconnect and free from callbacks, on worker threads or on the one
 * thread of a single-threaded runtime. */
static void callbacks_reenter(bool single_threaded) {
    single = single_threaded;
    atomic_store(&got_room, 0);
    atomic_store(&got_ack, 0);
    atomic_store(&disconnected, 0);
    atomic_store(&closed, 0);
    atomic_store(&srv_freed, 0);
    atomic_store(&wrong_thread, 0);
    tether_runtime_options opts = {0, TETHER_DELIVERY_RUNTIME_THREADS, single_threaded};
    tether_runtime *rt = NULL;
    OK(tether_runtime_new(&opts, &rt));
    OK(tether_sio_server_new(rt, NULL, &srv));
    OK(tether_sio_server_on(srv, "/", "hello", on_hello, rt, NULL));
    OK(tether_sio_server_on(srv, "/", "bye", on_bye, NULL, NULL));
    uint16_t port;
    OK(tether_sio_server_listen(srv, "127.0.0.1:0", &port));
    char url[64];
    url_for(url, sizeof url, port);
    tether_sio_client_config *cfg = ws_config();
    OK(tether_sio_client_config_set_reconnection(cfg, false, 0, 100, 100, 0));
    OK(tether_sio_client_new(rt, url, cfg, &cl));
    tether_sio_client_config_free(cfg);
    OK(tether_sio_client_on_lifecycle(cl, lifecycle, rt, NULL));
    tether_sio_client_socket *cs;
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    OK(tether_sio_client_socket_on(cs, "room-msg", c_room, NULL, NULL));
    OK(tether_sio_client_socket_connect(cs, 5000));
    OK(tether_sio_client_socket_emit_with_ack(cs, "hello", NULL, 0, NULL, 0, 5000, c_ack, NULL));
    WAIT(got_ack, 1);
    WAIT(got_room, 1);
    WAIT(srv_freed, 1);    /* the server closed itself from its callback */
    WAIT(disconnected, 1); /* so the client saw the connection go */
    WAIT(closed, 1);       /* and the client, freed from its own callback, closed */
    CHECK(atomic_load(&wrong_thread) == (single_threaded ? 2 : 1));
    OK(tether_runtime_shutdown(rt, 3000));
    tether_sio_client_socket_free(cs);
    tether_runtime_free(rt);
}

int main(void) {
    callbacks_reenter(false);
    callbacks_reenter(true);
    /* a single-threaded runtime has one thread */
    tether_runtime_options bad = {2, TETHER_DELIVERY_RUNTIME_THREADS, true};
    tether_runtime *rt = NULL;
    EXPECT_RC(tether_runtime_new(&bad, &rt), TETHER_RESULT_INVALID_PARAMETER);
    CHECK(rt == NULL);
    atomic_store(&got_room, 1); /* poll_reentry adds 100 */
    uint16_t port;
    char url[64];
    tether_sio_client_config *cfg;
    tether_sio_client_socket *cs;

    /* host poll: dispatch from inside a callback it runs is refused */
    tether_runtime_options o = {1, TETHER_DELIVERY_HOST_POLL, false};
    OK(tether_runtime_new(&o, &rt));
    OK(tether_sio_server_new(rt, NULL, &srv));
    OK(tether_sio_server_on(srv, "/", "x", poll_reentry, rt, NULL));
    OK(tether_sio_server_listen(srv, "127.0.0.1:0", &port));
    url_for(url, sizeof url, port);
    cfg = ws_config();
    OK(tether_sio_client_new(rt, url, cfg, &cl));
    tether_sio_client_config_free(cfg);
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    OK(tether_sio_client_socket_connect(cs, 5000));
    OK(tether_sio_client_socket_emit(cs, "x", NULL, 0, NULL, 0));
    double end = now_ms() + 5000;
    while (atomic_load(&got_room) < 101 && now_ms() < end) OK(tether_runtime_dispatch(rt, 16, 10, NULL));
    CHECK(atomic_load(&got_room) >= 101);
    OK(tether_runtime_shutdown(rt, 3000));
    tether_sio_client_socket_free(cs);
    tether_sio_client_free(cl);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
    printf("reentrant: ok\n");
    return 0;
}
