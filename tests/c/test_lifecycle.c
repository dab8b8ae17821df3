/* Lifecycle: runtime, server, client, events both ways, binary, acks both ways,
 * broadcast with ack, log callback, close, shutdown, frees; userdata released once. */
#include "common.h"

static atomic_int connections, disconnects, echoes, acks, asks, lc_connect, lc_disconnect,
    lc_closed, bcast_done, logs;
static tether_sio_socket *g_sock;
static const uint8_t BIN[3] = {1, 2, 3};

static void on_connection(void *ud, tether_sio_socket *s) {
    (void)ud;
    CHECK(tether_sio_socket_id(s).len > 0);
    CHECK(strcmp(tether_sio_socket_namespace(s).data, "/") == 0);
    CHECK(strcmp(tether_sio_socket_auth(s).data, "{\"user\":\"c\"}") == 0);
    g_sock = tether_sio_socket_clone(s);
    atomic_fetch_add(&connections, 1);
}

static void on_disconnect(void *ud, tether_sio_socket *s, tether_str reason) {
    (void)ud;
    (void)s;
    CHECK(reason.len > 0 && reason.data[reason.len] == '\0');
    atomic_fetch_add(&disconnects, 1);
}

static void on_echo(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    CHECK(strcmp(ev->name.data, "echo") == 0);
    OK(tether_sio_socket_emit(s, "echo", ev->args.json.data, ev->args.json.len, ev->args.bins,
                              ev->args.bins_len));
}

/* Text arguments are handed over in place: echo them twice (the second emit of the same
 * buffers included) and read them after each emit; ASan catches any use after free. */
static atomic_int text_echoes;
static void on_echo_text(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    const char *want = "[{\"a\": [1, 2.50]}, \"\\u00e9\"]";
    CHECK(ev->args.json.len == strlen(want) && ev->args.json.data[ev->args.json.len] == '\0');
    CHECK(strcmp(ev->args.json.data, want) == 0 && ev->args.bins_len == 0);
    for (int i = 0; i < 2; i++) {
        OK(tether_sio_socket_emit(s, "echo_text", ev->args.json.data, ev->args.json.len, NULL, 0));
        CHECK(strcmp(ev->args.json.data, want) == 0);
    }
}

static void client_on_echo_text(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    /* sent as it came: the bytes after the event name are the client's */
    CHECK(strcmp(ev->args.json.data, "[{\"a\": [1, 2.50]}, \"\\u00e9\"]") == 0);
    atomic_fetch_add(&text_echoes, 1);
}

static void on_ack_me(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    CHECK(ev->ack != NULL);
    OK(tether_ack_send(ev->ack, ev->args.json.data, ev->args.json.len, ev->args.bins,
                       ev->args.bins_len));
    EXPECT_RC(tether_ack_send(ev->ack, NULL, 0, NULL, 0), TETHER_RESULT_ALREADY_USED);
    CHECK(tether_ack_is_sent(ev->ack));
}

static void client_on_echo(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    CHECK(strcmp(ev->args.json.data, "[\"hi\",{\"_placeholder\":true,\"num\":0}]") == 0);
    CHECK(ev->args.bins_len == 1 && ev->args.bins[0].len == 3);
    CHECK(memcmp(ev->args.bins[0].data, BIN, 3) == 0);
    CHECK(ev->ack == NULL);
    atomic_fetch_add(&echoes, 1);
}

static void client_on_ask(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    CHECK(ev->ack != NULL);
    OK(tether_ack_send(ev->ack, "[\"answer\",42]", 13, NULL, 0));
    atomic_fetch_add(&asks, 1);
}

static void on_ack_reply(void *ud, tether_result status, const tether_sio_args *reply) {
    CHECK(status == TETHER_RESULT_OK);
    CHECK(reply != NULL);
    CHECK(strcmp(reply->json.data, (const char *)ud) == 0);
    atomic_fetch_add(&acks, 1);
}

static void on_bcast(void *ud, tether_result status, const tether_sio_ack_reply *r, size_t n,
                     size_t missing) {
    (void)ud;
    CHECK(status == TETHER_RESULT_OK);
    CHECK(n == 1 && missing == 0);
    CHECK(strcmp(r[0].args.json.data, "[\"answer\",42]") == 0);
    CHECK(r[0].socket_id.len > 0);
    atomic_fetch_add(&bcast_done, 1);
}

static void lifecycle(void *ud, tether_sio_client_socket *s, const tether_sio_client_event *ev) {
    (void)ud;
    switch (ev->kind) {
    case TETHER_SIO_CLIENT_EVENT_KIND_CONNECT:
        CHECK(s != NULL);
        atomic_fetch_add(&lc_connect, 1);
        break;
    case TETHER_SIO_CLIENT_EVENT_KIND_DISCONNECT:
        CHECK(s != NULL && ev->message.len > 0);
        atomic_fetch_add(&lc_disconnect, 1);
        break;
    case TETHER_SIO_CLIENT_EVENT_KIND_CLOSED:
        CHECK(s == NULL);
        atomic_fetch_add(&lc_closed, 1);
        break;
    default:
        break;
    }
}

static void on_log(void *ud, uint32_t level, tether_str target, tether_str msg) {
    (void)ud;
    (void)target;
    if (level <= TETHER_LOG_LEVEL_INFO && strstr(msg.data, "hello from the test")) atomic_fetch_add(&logs, 1);
}

int main(void) {
    printf("version %s\n", tether_version());
    CHECK(strcmp(tether_version(), "tether/" TETHER_VERSION_STRING) == 0);
    OK(tether_log_set_callback(TETHER_LOG_LEVEL_INFO, on_log, NULL, count_free));
    OK(tether_log_message(TETHER_LOG_LEVEL_INFO, "hello from the test"));
    OK(tether_log_message(TETHER_LOG_LEVEL_DEBUG, "filtered out"));
    CHECK(atomic_load(&logs) == 1);

    tether_runtime *rt = NULL;
    tether_runtime_options opts = {3, TETHER_DELIVERY_RUNTIME_THREADS, false};
    OK(tether_runtime_new(&opts, &rt));

    tether_sio_server_config *scfg = NULL;
    OK(tether_sio_server_config_new(&scfg));
    OK(tether_sio_server_config_set_ping_interval(scfg, 1000));
    OK(tether_sio_server_config_set_ping_timeout(scfg, 1000));
    OK(tether_sio_server_config_set_max_payload(scfg, 100000));
    OK(tether_sio_server_config_add_cors_origin(scfg, "*"));
    OK(tether_sio_server_config_set_connect_timeout(scfg, 5000));
    tether_sio_server *srv = NULL;
    OK(tether_sio_server_new(rt, scfg, &srv));
    tether_sio_server_config_free(scfg);
    OK(tether_sio_server_on_connection(srv, NULL, on_connection, NULL, count_free));
    OK(tether_sio_server_on_disconnect(srv, "/", on_disconnect, NULL, count_free));
    OK(tether_sio_server_on(srv, "/", "echo", on_echo, NULL, count_free));
    OK(tether_sio_server_on(srv, "/", "ack-me", on_ack_me, NULL, count_free));
    OK(tether_sio_server_on(srv, "/", "echo_text", on_echo_text, NULL, count_free));
    const char page[] = "<h1>hi</h1>";
    OK(tether_sio_server_add_route(srv, "/", "text/html", (const uint8_t *)page, sizeof page - 1));
    uint16_t port = 0;
    OK(tether_sio_server_listen(srv, "127.0.0.1:0", &port));
    CHECK(port != 0);

    char url[64];
    url_for(url, sizeof url, port);
    tether_sio_client_config *ccfg = ws_config();
    OK(tether_sio_client_config_set_auth(ccfg, "{\"user\":\"c\"}", 12));
    OK(tether_sio_client_config_set_reconnection(ccfg, true, 3, 100, 500, 0.5));
    OK(tether_sio_client_config_add_header(ccfg, "X-Test", "1"));
    tether_sio_client *cl = NULL;
    OK(tether_sio_client_new(rt, url, ccfg, &cl));
    tether_sio_client_config_free(ccfg);
    OK(tether_sio_client_on_lifecycle(cl, lifecycle, NULL, count_free));
    tether_sio_client_socket *cs = NULL;
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    OK(tether_sio_client_socket_on(cs, "echo", client_on_echo, NULL, count_free));
    OK(tether_sio_client_socket_on(cs, "ask", client_on_ask, NULL, count_free));
    OK(tether_sio_client_socket_on(cs, "echo_text", client_on_echo_text, NULL, count_free));
    OK(tether_sio_client_socket_connect(cs, 5000));
    CHECK(tether_sio_client_socket_connected(cs));
    WAIT(connections, 1);
    WAIT(lc_connect, 1);
    char id[64];
    size_t idn = 0;
    OK(tether_sio_client_socket_id(cs, id, sizeof id, &idn));
    CHECK(idn == tether_sio_socket_id(g_sock).len);
    CHECK(strcmp(id, tether_sio_socket_id(g_sock).data) == 0);
    CHECK(tether_sio_server_socket_count(srv, "/") == 1);

    /* client -> server -> client, with an attachment */
    const char *args = "[\"hi\",{\"_placeholder\":true,\"num\":0}]";
    tether_bytes bin = {BIN, 3};
    for (int i = 0; i < 10; i++) OK(tether_sio_client_socket_emit(cs, "echo", args, strlen(args), &bin, 1));
    WAIT(echoes, 10);
    /* text arguments: passed through byte for byte */
    const char *text = "[ {\"a\": [1, 2.50]}, \"\\u00e9\"]";
    OK(tether_sio_client_socket_emit(cs, "echo_text", text, strlen(text), NULL, 0));
    WAIT(text_echoes, 2);
    /* client emit with ack */
    OK(tether_sio_client_socket_emit_with_ack(cs, "ack-me", "[1,\"two\"]", 9, NULL, 0, 5000,
                                              on_ack_reply, (void *)"[1,\"two\"]"));
    WAIT(acks, 1);
    /* server emit with ack to the socket */
    OK(tether_sio_socket_emit_with_ack(g_sock, "ask", NULL, 0, NULL, 0, 5000, on_ack_reply,
                                       (void *)"[\"answer\",42]"));
    WAIT(acks, 2);
    /* broadcast with ack */
    OK(tether_sio_server_emit_with_ack(srv, "/", NULL, "ask", "[]", 2, NULL, 0, 5000, on_bcast, NULL));
    WAIT(bcast_done, 1);
    WAIT(asks, 2);

    /* close the client: server sees the disconnect, client reports DISCONNECT then CLOSED */
    OK(tether_sio_client_close(cl));
    WAIT(lc_closed, 1);
    WAIT(disconnects, 1);
    CHECK(atomic_load(&lc_disconnect) == 1);
    CHECK(!tether_sio_socket_connected(g_sock));
    EXPECT_RC(tether_sio_socket_emit(g_sock, "echo", NULL, 0, NULL, 0), TETHER_RESULT_NOT_CONNECTED);

    OK(tether_runtime_shutdown(rt, 5000));
    OK(tether_runtime_shutdown(rt, 5000)); /* idempotent */
    EXPECT_RC(tether_sio_server_listen(srv, "127.0.0.1:0", NULL), TETHER_RESULT_SHUT_DOWN);
    tether_sio_socket_free(g_sock);
    tether_sio_client_socket_free(cs);
    tether_sio_client_free(cl);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
    OK(tether_log_set_callback(TETHER_LOG_LEVEL_OFF, NULL, NULL, NULL));
    /* 4 server handlers + lifecycle + 2 client handlers + the log callback */
    CHECK(atomic_load(&g_freed) == 10);
    printf("lifecycle: ok\n");
    return 0;
}
