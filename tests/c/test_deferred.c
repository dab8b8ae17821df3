/* Deferred answers from another thread: connect requests (accept / reject with data)
 * and acks; the second answer is an error; an unanswered ack is released cleanly. */
#include "common.h"

static atomic_int answered, refused_seen, acked, timed_out, connected;
static char refuse_msg[128], refuse_data[256];

static void *answer_request(void *p) {
    tether_sio_connect_request *req = p;
    sleep_ms(100);
    char token[64];
    size_t n;
    const char *auth = tether_sio_connect_request_auth(req).data;
    tether_result rc = tether_json_pointer_string(auth, strlen(auth), "/token", token, sizeof token, &n);
    if (rc == TETHER_RESULT_OK && strcmp(token, "good") == 0) {
        OK(tether_sio_connect_request_accept(req));
        EXPECT_RC(tether_sio_connect_request_accept(req), TETHER_RESULT_ALREADY_USED);
    } else {
        OK(tether_sio_connect_request_reject(req, "not authorized", "{\"reason\":\"bad token\"}", 22));
        EXPECT_RC(tether_sio_connect_request_accept(req), TETHER_RESULT_ALREADY_USED);
    }
    tether_sio_connect_request_free(req);
    atomic_fetch_add(&answered, 1);
    return NULL;
}

static void on_request(void *ud, tether_sio_connect_request *req) {
    (void)ud;
    CHECK(strcmp(tether_sio_connect_request_namespace(req).data, "/") == 0);
    char q[32];
    OK(tether_sio_connect_request_query(req, "EIO", q, sizeof q, NULL));
    CHECK(strcmp(q, "4") == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, answer_request, tether_sio_connect_request_clone(req)) == 0);
    pthread_detach(t);
}

static void *answer_ack(void *p) {
    tether_ack *ack = p;
    sleep_ms(50);
    OK(tether_ack_send(ack, "[\"later\"]", 9, NULL, 0));
    EXPECT_RC(tether_ack_send(ack, "[\"again\"]", 9, NULL, 0), TETHER_RESULT_ALREADY_USED);
    tether_ack_free(ack);
    return NULL;
}

static void on_slow(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, answer_ack, tether_ack_clone(ev->ack)) == 0);
    pthread_detach(t);
}

static void on_never(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    /* keep it a while, then release unanswered */
    tether_ack *a = tether_ack_clone(ev->ack);
    CHECK(!tether_ack_is_sent(a));
    tether_ack_free(a);
}

static void on_reply(void *ud, tether_result st, const tether_sio_args *r) {
    (void)ud;
    if (st == TETHER_RESULT_OK) {
        CHECK(strcmp(r->json.data, "[\"later\"]") == 0);
        atomic_fetch_add(&acked, 1);
    } else {
        CHECK(st == TETHER_RESULT_TIMEOUT && r == NULL);
        atomic_fetch_add(&timed_out, 1);
    }
}

static void lifecycle(void *ud, tether_sio_client_socket *s, const tether_sio_client_event *ev) {
    (void)ud;
    (void)s;
    if (ev->kind == TETHER_SIO_CLIENT_EVENT_KIND_CONNECT_ERROR) {
        snprintf(refuse_msg, sizeof refuse_msg, "%s", ev->message.data);
        snprintf(refuse_data, sizeof refuse_data, "%s", ev->data_json.data);
        atomic_fetch_add(&refused_seen, 1);
    }
    if (ev->kind == TETHER_SIO_CLIENT_EVENT_KIND_CONNECT) atomic_fetch_add(&connected, 1);
}

static tether_sio_client *make_client(tether_runtime *rt, const char *url, const char *auth) {
    tether_sio_client_config *cfg = ws_config();
    OK(tether_sio_client_config_set_auth(cfg, auth, strlen(auth)));
    OK(tether_sio_client_config_set_reconnection(cfg, false, 0, 100, 100, 0));
    tether_sio_client *c;
    OK(tether_sio_client_new(rt, url, cfg, &c));
    tether_sio_client_config_free(cfg);
    OK(tether_sio_client_on_lifecycle(c, lifecycle, NULL, NULL));
    return c;
}

int main(void) {
    tether_runtime *rt;
    OK(tether_runtime_new(NULL, &rt));
    tether_sio_server *srv;
    OK(tether_sio_server_new(rt, NULL, &srv));
    OK(tether_sio_server_on_connect_request(srv, "/", on_request, NULL, NULL));
    OK(tether_sio_server_on(srv, "/", "slow", on_slow, NULL, NULL));
    OK(tether_sio_server_on(srv, "/", "never", on_never, NULL, NULL));
    uint16_t port;
    OK(tether_sio_server_listen(srv, "127.0.0.1:0", &port));
    char url[64];
    url_for(url, sizeof url, port);

    /* refused, with message and data */
    tether_sio_client *bad = make_client(rt, url, "{\"token\":\"bad\"}");
    tether_sio_client_socket *bs;
    OK(tether_sio_client_socket_new(bad, NULL, &bs));
    EXPECT_RC(tether_sio_client_socket_connect(bs, 5000), TETHER_RESULT_CONNECT_REFUSED);
    WAIT(refused_seen, 1);
    CHECK(strcmp(refuse_msg, "not authorized") == 0);
    CHECK(strstr(refuse_data, "bad token") != NULL);

    /* accepted later from another thread */
    tether_sio_client *good = make_client(rt, url, "{\"token\":\"good\"}");
    tether_sio_client_socket *gs;
    OK(tether_sio_client_socket_new(good, NULL, &gs));
    OK(tether_sio_client_socket_connect(gs, 5000));
    WAIT(connected, 1);
    WAIT(answered, 2);

    /* an ack answered later from another thread */
    OK(tether_sio_client_socket_emit_with_ack(gs, "slow", NULL, 0, NULL, 0, 5000, on_reply, NULL));
    WAIT(acked, 1);
    /* an ack released unanswered: the emitter's timeout fires */
    OK(tether_sio_client_socket_emit_with_ack(gs, "never", NULL, 0, NULL, 0, 300, on_reply, NULL));
    WAIT(timed_out, 1);

    OK(tether_runtime_shutdown(rt, 3000));
    tether_sio_client_socket_free(bs);
    tether_sio_client_socket_free(gs);
    tether_sio_client_free(bad);
    tether_sio_client_free(good);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
    printf("deferred: ok\n");
    return 0;
}
