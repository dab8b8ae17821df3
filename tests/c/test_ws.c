/* Plain WebSocket from C: a tether_ws_server and a tether_ws_client in one process
 * exchange text and binary messages, close with codes and reasons both ways, and
 * every error path returns its code. A host-poll runtime runs client callbacks only
 * inside tether_runtime_dispatch(). */
#include "common.h"

#include <stdbool.h>

typedef struct {
    atomic_int opened, closed, messages, high_water, connect_errors;
    int close_code;
    char close_reason[128];
    bool close_by_peer;
    char last[256];
    size_t last_len;
    bool last_binary;
    char header[64];
    char path[64];
    pthread_t poll_thread; /* host poll: callbacks must run on this thread */
    atomic_int wrong_thread;
    int last_error;
} side;

static void on_open(void *ud, tether_ws_conn *c) {
    side *s = ud;
    size_t n = 0;
    if (tether_ws_conn_request_header(c, "x-test", s->header, sizeof s->header, &n) != TETHER_RESULT_OK)
        s->header[0] = 0;
    if (tether_ws_conn_request_path(c, s->path, sizeof s->path, &n) != TETHER_RESULT_OK) s->path[0] = 0;
    if (s->poll_thread && !pthread_equal(pthread_self(), s->poll_thread)) atomic_fetch_add(&s->wrong_thread, 1);
    atomic_fetch_add(&s->opened, 1);
}

/* Server: echo, and close on request. */
static void server_on_message(void *ud, tether_ws_conn *c, bool binary, const uint8_t *data, size_t len) {
    side *s = ud;
    if (!binary && len == 8 && memcmp(data, "close-me", 8) == 0) {
        CHECK(tether_ws_conn_close(c, 4001, "bye server") == TETHER_RESULT_OK);
    } else if (binary) {
        CHECK(tether_ws_conn_send_binary(c, data, len) == TETHER_RESULT_OK);
    } else {
        CHECK(tether_ws_conn_send_text(c, (const char *)data, len) == TETHER_RESULT_OK);
    }
    atomic_fetch_add(&s->messages, 1);
}

static void client_on_message(void *ud, tether_ws_conn *c, bool binary, const uint8_t *data, size_t len) {
    side *s = ud;
    (void)c;
    if (s->poll_thread && !pthread_equal(pthread_self(), s->poll_thread)) atomic_fetch_add(&s->wrong_thread, 1);
    if (len < sizeof s->last) {
        if (len) memcpy(s->last, data, len);
        s->last[len] = 0;
        s->last_len = len;
        s->last_binary = binary;
    }
    atomic_fetch_add(&s->messages, 1);
}

static void on_close(void *ud, tether_ws_conn *c, uint16_t code, tether_str reason, bool by_peer) {
    side *s = ud;
    (void)c;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%.*s", (int)reason.len, reason.data);
    s->close_by_peer = by_peer;
    /* Sending on a closed connection, from inside a callback: NOT_CONNECTED (SHUT_DOWN
     * while the runtime shuts down). */
    tether_result r = tether_ws_conn_send_text(c, "x", 1);
    CHECK(r == TETHER_RESULT_NOT_CONNECTED || r == TETHER_RESULT_SHUT_DOWN);
    atomic_fetch_add(&s->closed, 1);
}

static void on_high_water(void *ud, tether_ws_conn *c, size_t queued) {
    side *s = ud;
    (void)c;
    CHECK(queued >= 1);
    atomic_fetch_add(&s->high_water, 1);
}

static void on_connect_error(void *ud, tether_result status, tether_str message) {
    side *s = ud;
    s->last_error = (int)status;
    CHECK(message.len > 0);
    atomic_fetch_add(&s->connect_errors, 1);
}

/* A client that frees itself from its own callback (deferred, not a crash). */
typedef struct {
    tether_ws_client *client;
    atomic_int got, closed;
} selffree;

static void sf_on_message(void *ud, tether_ws_conn *c, bool binary, const uint8_t *data, size_t len) {
    selffree *s = ud;
    (void)binary;
    (void)data;
    (void)len;
    tether_ws_client_free(s->client); /* closes its connections: on_close follows */
    s->client = NULL;
    tether_result r = tether_ws_conn_send_text(c, "after free", 10); /* the borrowed conn is still valid */
    CHECK(r == TETHER_RESULT_OK || r == TETHER_RESULT_NOT_CONNECTED);
    atomic_fetch_add(&s->got, 1);
}

static void sf_on_close(void *ud, tether_ws_conn *c, uint16_t code, tether_str reason, bool by_peer) {
    selffree *s = ud;
    (void)c;
    (void)reason;
    (void)by_peer;
    CHECK(code == 1001);
    atomic_fetch_add(&s->closed, 1);
}

static tether_ws_callbacks callbacks(side *s, bool server) {
    tether_ws_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.on_open = on_open;
    cb.on_message = server ? server_on_message : client_on_message;
    cb.on_close = on_close;
    cb.on_high_water = on_high_water;
    cb.on_connect_error = on_connect_error;
    cb.userdata = s;
    cb.userdata_free = count_free;
    return cb;
}

static void wait_flag(atomic_int *v, int target) {
    if (!wait_for(v, target, 10000)) {
        fprintf(stderr, "timed out waiting for %d (is %d)\n", target, atomic_load(v));
        exit(1);
    }
}

int main(void) {
    tether_runtime *rt = NULL;
    OK(tether_runtime_new(NULL, &rt));

    /* ---- config errors */
    tether_ws_config *scfg = NULL;
    OK(tether_ws_config_new(&scfg));
    EXPECT_RC(tether_ws_config_new(NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_ws_config_set_path(scfg, "no-slash"), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_config_set_path(NULL, "/x"), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_ws_config_set_path(scfg, "/\xff"), TETHER_RESULT_INVALID_UTF8);
    EXPECT_RC(tether_ws_config_add_subprotocol(scfg, "bad proto"), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_config_set_max_message_size(scfg, 10), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_config_set_send_queue(scfg, 4, 8), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_config_set_tls_files(scfg, "/nonexistent.pem", "/nonexistent.key"), TETHER_RESULT_IO);
    EXPECT_RC(tether_ws_config_set_tls_pem(scfg, (const uint8_t *)"junk", 4, (const uint8_t *)"junk", 4),
              TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_config_add_ca_pem(scfg, (const uint8_t *)"junk", 4), TETHER_RESULT_INVALID_PARAMETER);
    OK(tether_ws_config_set_path(scfg, "/ws"));
    OK(tether_ws_config_add_subprotocol(scfg, "chat.v1"));
    OK(tether_ws_config_set_max_message_size(scfg, 4096));
    OK(tether_ws_config_set_keepalive(scfg, 5000));

    /* ---- server */
    side srv;
    memset(&srv, 0, sizeof srv);
    tether_ws_callbacks scb = callbacks(&srv, true);
    tether_ws_server *server = NULL;
    OK(tether_ws_server_new(rt, scfg, &scb, &server));
    tether_ws_config_free(scfg);
    uint16_t port = 0;
    EXPECT_RC(tether_ws_server_listen(server, "not an address", &port), TETHER_RESULT_IO);
    OK(tether_ws_server_listen(server, "127.0.0.1:0", &port));
    CHECK(port != 0);

    /* ---- client */
    tether_ws_config *ccfg = NULL;
    OK(tether_ws_config_new(&ccfg));
    OK(tether_ws_config_add_subprotocol(ccfg, "chat.v1"));
    OK(tether_ws_config_add_header(ccfg, "X-Test", "yes"));
    EXPECT_RC(tether_ws_config_add_header(ccfg, "bad header", "v"), TETHER_RESULT_INVALID_PARAMETER);
    side cli;
    memset(&cli, 0, sizeof cli);
    tether_ws_callbacks ccb = callbacks(&cli, false);
    tether_ws_client *client = NULL;
    OK(tether_ws_client_new(rt, ccfg, &ccb, &client));

    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/ws?room=1", (unsigned)port);
    tether_ws_conn *conn = NULL;
    OK(tether_ws_client_connect(client, url, 5000, &conn));
    CHECK(conn != NULL);
    wait_flag(&cli.opened, 1);
    wait_flag(&srv.opened, 1);
    CHECK(strcmp(srv.header, "yes") == 0);
    CHECK(strcmp(srv.path, "/ws?room=1") == 0);
    tether_str proto = tether_ws_conn_protocol(conn);
    CHECK(proto.len == 7 && memcmp(proto.data, "chat.v1", 7) == 0);
    CHECK(tether_ws_conn_id(conn) != 0);
    CHECK(tether_ws_conn_is_open(conn));
    CHECK(tether_ws_server_connection_count(server) == 1);
    /* A client-side connection has no request. */
    {
        char b[16];
        EXPECT_RC(tether_ws_conn_request_header(conn, "x", b, sizeof b, NULL), TETHER_RESULT_INVALID_PARAMETER);
    }

    /* text */
    OK(tether_ws_conn_send_text(conn, "hello", 5));
    wait_flag(&cli.messages, 1);
    CHECK(!cli.last_binary && cli.last_len == 5 && memcmp(cli.last, "hello", 5) == 0);
    /* binary, with a NUL and high bytes */
    const uint8_t bin[5] = {0, 1, 2, 0xfe, 0xff};
    OK(tether_ws_conn_send_binary(conn, bin, sizeof bin));
    wait_flag(&cli.messages, 2);
    CHECK(cli.last_binary && cli.last_len == 5 && memcmp(cli.last, bin, 5) == 0);
    /* empty text */
    OK(tether_ws_conn_send_text(conn, NULL, 0));
    wait_flag(&cli.messages, 3);
    CHECK(!cli.last_binary && cli.last_len == 0);

    /* error paths on a live connection */
    EXPECT_RC(tether_ws_conn_send_text(conn, "\xc3\x28", 2), TETHER_RESULT_INVALID_UTF8);
    EXPECT_RC(tether_ws_conn_send_text(conn, NULL, 3), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_ws_conn_send_text(NULL, "x", 1), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_ws_conn_close(conn, 1005, NULL), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_conn_close(conn, 999, NULL), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_conn_close(conn, 4000, "\xff"), TETHER_RESULT_INVALID_UTF8);
    /* A message bigger than the server's limit closes that connection with 1009. */

    /* client closes: the server sees the code and reason from the peer */
    OK(tether_ws_conn_close(conn, 4000, "bye client"));
    wait_flag(&srv.closed, 1);
    wait_flag(&cli.closed, 1);
    CHECK(srv.close_code == 4000 && strcmp(srv.close_reason, "bye client") == 0 && srv.close_by_peer);
    CHECK(cli.close_code == 4000 && !cli.close_by_peer);
    CHECK(!tether_ws_conn_is_open(conn));
    EXPECT_RC(tether_ws_conn_send_text(conn, "late", 4), TETHER_RESULT_NOT_CONNECTED);
    tether_ws_conn_free(conn);
    conn = NULL;

    /* server closes: the client sees the code and reason from the peer */
    OK(tether_ws_client_connect(client, url, 5000, &conn));
    OK(tether_ws_conn_send_text(conn, "close-me", 8));
    wait_flag(&cli.closed, 2);
    CHECK(cli.close_code == 4001 && strcmp(cli.close_reason, "bye server") == 0 && cli.close_by_peer);
    wait_flag(&srv.closed, 2);
    tether_ws_conn_free(conn);
    conn = NULL;

    /* too big for the server (4096): closed with 1009 */
    OK(tether_ws_client_connect(client, url, 5000, &conn));
    {
        char *big = malloc(8192);
        CHECK(big != NULL);
        memset(big, 'a', 8192);
        OK(tether_ws_conn_send_text(conn, big, 8192));
        free(big);
    }
    wait_flag(&cli.closed, 3);
    CHECK(cli.close_code == 1009);
    tether_ws_conn_free(conn);
    conn = NULL;

    /* ---- connect errors */
    char bad[128];
    EXPECT_RC(tether_ws_client_connect(client, "http://127.0.0.1:1/", 2000, NULL), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_ws_client_connect(client, NULL, 2000, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_ws_client_connect(client, url, 0, &conn), TETHER_RESULT_INVALID_PARAMETER);
    snprintf(bad, sizeof bad, "ws://127.0.0.1:%u/not-here", (unsigned)port);
    EXPECT_RC(tether_ws_client_connect(client, bad, 5000, NULL), TETHER_RESULT_CONNECT_REFUSED);
    {
        /* a port with nothing listening: bind one, learn it, close it */
        tether_ws_server *tmp = NULL;
        uint16_t p2 = 0;
        OK(tether_ws_server_new(rt, NULL, NULL, &tmp));
        OK(tether_ws_server_listen(tmp, "127.0.0.1:0", &p2));
        OK(tether_ws_server_close(tmp));
        EXPECT_RC(tether_ws_server_listen(tmp, "127.0.0.1:0", NULL), TETHER_RESULT_SHUT_DOWN);
        tether_ws_server_free(tmp);
        sleep_ms(50);
        snprintf(bad, sizeof bad, "ws://127.0.0.1:%u/", (unsigned)p2);
        EXPECT_RC(tether_ws_client_connect(client, bad, 5000, NULL), TETHER_RESULT_CONNECT_FAILED);
        /* in the background: on_connect_error */
        OK(tether_ws_client_connect(client, bad, 0, NULL));
        wait_flag(&cli.connect_errors, 1);
        CHECK(cli.last_error == TETHER_RESULT_CONNECT_FAILED);
    }
    /* subprotocol mismatch: the server supports none the client offers */
    {
        tether_ws_config *c2 = NULL;
        OK(tether_ws_config_new(&c2));
        OK(tether_ws_config_add_subprotocol(c2, "other.v9"));
        side s2;
        memset(&s2, 0, sizeof s2);
        tether_ws_client *cl2 = NULL;
        OK(tether_ws_client_new(rt, c2, NULL, &cl2));
        tether_ws_config_free(c2);
        tether_ws_conn *cx = NULL;
        /* the server picks none of the offered ones: the client refuses */
        EXPECT_RC(tether_ws_client_connect(cl2, url, 5000, &cx), TETHER_RESULT_CONNECT_FAILED);
        CHECK(cx == NULL);
        char m[256];
        tether_last_error_message(m, sizeof m, NULL);
        CHECK(strstr(m, "subprotocol") != NULL);
        tether_ws_client_free(cl2);
    }

    /* ---- allowed origins: a request from another origin (or none) gets HTTP 403 */
    {
        tether_ws_config *oc = NULL;
        OK(tether_ws_config_new(&oc));
        EXPECT_RC(tether_ws_config_add_allowed_origin(oc, "bad origin"), TETHER_RESULT_INVALID_PARAMETER);
        OK(tether_ws_config_add_allowed_origin(oc, "https://game.example"));
        tether_ws_server *os = NULL;
        OK(tether_ws_server_new(rt, oc, NULL, &os));
        tether_ws_config_free(oc);
        uint16_t op = 0;
        OK(tether_ws_server_listen(os, "127.0.0.1:0", &op));
        char ou[64];
        snprintf(ou, sizeof ou, "ws://127.0.0.1:%u/", (unsigned)op);
        tether_ws_client *nc = NULL;
        OK(tether_ws_client_new(rt, NULL, NULL, &nc));
        EXPECT_RC(tether_ws_client_connect(nc, ou, 5000, NULL), TETHER_RESULT_CONNECT_REFUSED);
        tether_ws_client_free(nc);
        tether_ws_config *hc = NULL;
        OK(tether_ws_config_new(&hc));
        OK(tether_ws_config_add_header(hc, "Origin", "https://evil.example"));
        OK(tether_ws_client_new(rt, hc, NULL, &nc));
        EXPECT_RC(tether_ws_client_connect(nc, ou, 5000, NULL), TETHER_RESULT_CONNECT_REFUSED);
        tether_ws_client_free(nc);
        tether_ws_config_free(hc);
        OK(tether_ws_config_new(&hc));
        OK(tether_ws_config_add_header(hc, "Origin", "https://game.example"));
        OK(tether_ws_client_new(rt, hc, NULL, &nc));
        tether_ws_config_free(hc);
        tether_ws_conn *oconn = NULL;
        OK(tether_ws_client_connect(nc, ou, 5000, &oconn));
        CHECK(tether_ws_conn_is_open(oconn));
        tether_ws_conn_free(oconn);
        tether_ws_client_free(nc);
        tether_ws_server_free(os);
    }

    /* ---- queue full + high water */
    {
        tether_ws_config *c3 = NULL;
        OK(tether_ws_config_new(&c3));
        OK(tether_ws_config_set_send_queue(c3, 4, 2));
        tether_ws_client *cl3 = NULL;
        OK(tether_ws_client_new(rt, c3, &ccb, &cl3)); /* same userdata; freed once more */
        tether_ws_config_free(c3);
        tether_ws_conn *cx = NULL;
        OK(tether_ws_client_connect(cl3, url, 5000, &cx));
        int full = 0;
        static char chunk[3000];
        memset(chunk, 'q', sizeof chunk);
        for (int i = 0; i < 100000 && !full; i++) {
            tether_result r = tether_ws_conn_send_text(cx, chunk, 2000);
            if (r == TETHER_RESULT_QUEUE_FULL) full = 1;
            else CHECK(r == TETHER_RESULT_OK);
        }
        CHECK(full);
        wait_flag(&cli.high_water, 1);
        int closed_before = atomic_load(&cli.closed);
        tether_ws_conn_free(cx);
        tether_ws_client_free(cl3);
        wait_flag(&cli.closed, closed_before + 1); /* its connection's on_close */
    }

    /* ---- freeing the client from its own callback */
    {
        selffree sf;
        memset(&sf, 0, sizeof sf);
        tether_ws_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.on_message = sf_on_message;
        cb.on_close = sf_on_close;
        cb.userdata = &sf;
        OK(tether_ws_client_new(rt, NULL, &cb, &sf.client));
        tether_ws_conn *cx = NULL;
        OK(tether_ws_client_connect(sf.client, url, 5000, &cx));
        OK(tether_ws_conn_send_text(cx, "free me", 7));
        wait_flag(&sf.got, 1);
        wait_flag(&sf.closed, 1);
        CHECK(sf.client == NULL);
        EXPECT_RC(tether_ws_conn_send_text(cx, "x", 1), TETHER_RESULT_NOT_CONNECTED);
        tether_ws_conn_free(cx);
    }

    /* ---- host poll: callbacks only inside tether_runtime_dispatch */
    {
        tether_runtime_options o = {.worker_threads = 1, .delivery = TETHER_DELIVERY_HOST_POLL};
        tether_runtime *hp = NULL;
        OK(tether_runtime_new(&o, &hp));
        side hs;
        memset(&hs, 0, sizeof hs);
        hs.poll_thread = pthread_self();
        tether_ws_callbacks hcb = callbacks(&hs, false);
        tether_ws_client *hc = NULL;
        OK(tether_ws_client_new(hp, NULL, &hcb, &hc));
        tether_ws_conn *hconn = NULL;
        OK(tether_ws_client_connect(hc, url, 5000, &hconn));
        OK(tether_ws_conn_send_text(hconn, "polled", 6));
        sleep_ms(100);
        CHECK(atomic_load(&hs.opened) == 0 && atomic_load(&hs.messages) == 0);
        double end = now_ms() + 5000;
        while (atomic_load(&hs.messages) < 1 && now_ms() < end) {
            size_t ran = 0;
            OK(tether_runtime_dispatch(hp, 16, 20, &ran));
        }
        CHECK(atomic_load(&hs.opened) == 1 && atomic_load(&hs.messages) == 1);
        CHECK(strcmp(hs.last, "polled") == 0);
        /* shutdown delivers the close on this thread */
        OK(tether_runtime_shutdown(hp, 5000));
        CHECK(atomic_load(&hs.closed) == 1);
        CHECK(hs.close_code == 1001);
        CHECK(atomic_load(&hs.wrong_thread) == 0);
        EXPECT_RC(tether_ws_conn_send_text(hconn, "x", 1), TETHER_RESULT_SHUT_DOWN);
        tether_ws_conn_free(hconn);
        tether_ws_client_free(hc);
        tether_runtime_free(hp);
    }

    /* NULL-tolerant frees and accessors */
    tether_ws_conn_free(NULL);
    tether_ws_client_free(NULL);
    tether_ws_server_free(NULL);
    tether_ws_config_free(NULL);
    CHECK(tether_ws_conn_id(NULL) == 0);
    CHECK(tether_ws_conn_protocol(NULL).len == 0);
    CHECK(!tether_ws_conn_is_open(NULL));
    CHECK(tether_ws_server_connection_count(NULL) == 0);

    /* ---- shutdown with a connection open: both sides get on_close */
    int so = atomic_load(&srv.opened);
    OK(tether_ws_client_connect(client, url, 5000, &conn));
    wait_flag(&srv.opened, so + 1);
    int cc = atomic_load(&cli.closed), sc = atomic_load(&srv.closed);
    OK(tether_runtime_shutdown(rt, 5000));
    CHECK(atomic_load(&cli.closed) == cc + 1);
    CHECK(atomic_load(&srv.closed) >= sc + 1);
    EXPECT_RC(tether_ws_client_connect(client, url, 5000, NULL), TETHER_RESULT_SHUT_DOWN);
    tether_ws_conn_free(conn);
    tether_ws_client_free(client);
    tether_ws_server_free(server);
    tether_ws_config_free(ccfg);
    tether_runtime_free(rt);
    /* userdata: server, client, client 3, host-poll client */
    CHECK(atomic_load(&g_freed) == 4);
    printf("test_ws: ok\n");
    return 0;
}
