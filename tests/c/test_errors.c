/* Every error path: NULL handles and strings, invalid UTF-8, invalid JSON, invalid
 * configs, wrong mode, use after shutdown, result names, last-error copy-out. */
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static void nop_event(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud; (void)s; (void)ev;
}
static void nop_ack(void *ud, tether_result st, const tether_sio_args *r) {
    (void)ud; (void)st; (void)r;
}

int main(void) {
    const char bad_utf8[] = {'a', (char)0xff, (char)0xfe, 0};
    char buf[256];
    size_t n = 0;

    /* result names and last error */
    CHECK(strcmp(tether_result_str(TETHER_RESULT_OK), "TETHER_RESULT_OK") == 0);
    CHECK(strcmp(tether_result_str(TETHER_RESULT_TIMEOUT), "TETHER_RESULT_TIMEOUT") == 0);
    CHECK(strcmp(tether_result_str(9999), "TETHER_RESULT_UNKNOWN") == 0);
    EXPECT_RC(tether_runtime_new(NULL, NULL), TETHER_RESULT_NULL_PARAMETER);
    OK(tether_last_error_message(buf, sizeof buf, &n));
    CHECK(n > 0 && strstr(buf, "runtime_out") != NULL);
    char tiny[4];
    EXPECT_RC(tether_last_error_message(tiny, sizeof tiny, &n), TETHER_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 3 && tiny[3] == '\0');
    EXPECT_RC(tether_last_error_message(NULL, 10, NULL), TETHER_RESULT_NULL_PARAMETER);

    /* runtime options */
    tether_runtime *rt = NULL;
    tether_runtime_options bad_workers = {1000, 0, false}, bad_mode = {1, 7, false};
    EXPECT_RC(tether_runtime_new(&bad_workers, &rt), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_runtime_new(&bad_mode, &rt), TETHER_RESULT_INVALID_PARAMETER);
    CHECK(rt == NULL); /* out-parameters untouched on failure */
    OK(tether_runtime_new(NULL, &rt));
    EXPECT_RC(tether_runtime_dispatch(rt, 10, 0, NULL), TETHER_RESULT_WRONG_MODE);
    EXPECT_RC(tether_runtime_dispatch(NULL, 10, 0, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_runtime_shutdown(NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    CHECK(tether_runtime_pending(NULL) == 0);

    /* server config */
    tether_sio_server_config *sc = NULL;
    EXPECT_RC(tether_sio_server_config_new(NULL), TETHER_RESULT_NULL_PARAMETER);
    OK(tether_sio_server_config_new(&sc));
    EXPECT_RC(tether_sio_server_config_set_ping_interval(sc, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_ping_timeout(sc, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_connect_timeout(sc, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_max_payload(sc, 10), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_path(sc, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_path(sc, bad_utf8), TETHER_RESULT_INVALID_UTF8);
    EXPECT_RC(tether_sio_server_config_set_path(sc, "/a b"), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_add_cors_origin(sc, ""), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_ping_interval(NULL, 5), TETHER_RESULT_NULL_PARAMETER);
    OK(tether_sio_server_config_set_path(sc, "custom"));

    tether_sio_server *srv = NULL;
    EXPECT_RC(tether_sio_server_new(NULL, sc, &srv), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_new(rt, sc, NULL), TETHER_RESULT_NULL_PARAMETER);
    OK(tether_sio_server_new(rt, sc, &srv));
    tether_sio_server_config_free(sc);
    EXPECT_RC(tether_sio_server_on(srv, "/", "x", NULL, NULL, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_on(srv, "/", NULL, nop_event, NULL, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_on(srv, bad_utf8, "x", nop_event, NULL, count_free),
              TETHER_RESULT_INVALID_UTF8);
    CHECK(atomic_load(&g_freed) == 1); /* a failed registration still releases userdata */
    EXPECT_RC(tether_sio_server_on(NULL, "/", "x", nop_event, NULL, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_listen(srv, "not an address", NULL), TETHER_RESULT_IO);
    EXPECT_RC(tether_sio_server_listen(srv, NULL, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_add_file(srv, "/", "text/html", "/nonexistent/file"), TETHER_RESULT_IO);
    EXPECT_RC(tether_sio_server_add_route(srv, "nope", "text/html", NULL, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_add_route(srv, "/x", "text/html", NULL, 5), TETHER_RESULT_NULL_PARAMETER);

    /* emits: invalid JSON, not an array, bad placeholders, reserved names */
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", "[1,", 3, NULL, 0), TETHER_RESULT_INVALID_JSON);
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", "{\"a\":1}", 7, NULL, 0), TETHER_RESULT_INVALID_JSON);
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", bad_utf8, 3, NULL, 0), TETHER_RESULT_INVALID_UTF8);
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", NULL, 3, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    const char *ph = "[{\"_placeholder\":true,\"num\":1}]";
    uint8_t b = 7;
    tether_bytes one = {&b, 1};
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", ph, strlen(ph), &one, 1), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", "[]", 2, NULL, 1), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "connect", "[]", 2, NULL, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, NULL, "[]", 2, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    OK(tether_sio_server_emit(srv, "/", NULL, "e", NULL, 0, NULL, 0)); /* no sockets: fine */
    tether_sio_target t = {NULL, 2, NULL, 0, NULL, false};
    EXPECT_RC(tether_sio_server_emit(srv, "/", &t, "e", NULL, 0, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_emit_with_ack(srv, "/", NULL, "e", NULL, 0, NULL, 0, 100, NULL, NULL),
              TETHER_RESULT_NULL_PARAMETER);

    /* sockets, acks, requests: NULL handles */
    EXPECT_RC(tether_sio_socket_emit(NULL, "e", NULL, 0, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_socket_join(NULL, "r"), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_socket_emit_with_ack(NULL, "e", NULL, 0, NULL, 0, 10, nop_ack, NULL),
              TETHER_RESULT_NULL_PARAMETER);
    CHECK(tether_sio_socket_id(NULL).len == 0 && tether_sio_socket_id(NULL).data != NULL);
    CHECK(tether_sio_socket_clone(NULL) == NULL);
    CHECK(!tether_sio_socket_connected(NULL));
    EXPECT_RC(tether_ack_send(NULL, NULL, 0, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    CHECK(tether_ack_clone(NULL) == NULL);
    EXPECT_RC(tether_sio_connect_request_accept(NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_connect_request_reject(NULL, "no", NULL, 0), TETHER_RESULT_NULL_PARAMETER);

    /* client config and client */
    tether_sio_client_config *cc = NULL;
    OK(tether_sio_client_config_new(&cc));
    EXPECT_RC(tether_sio_client_config_set_transports(cc, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_config_set_transports(cc, 8), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_config_set_auth(cc, "[1]", 3), TETHER_RESULT_INVALID_JSON);
    EXPECT_RC(tether_sio_client_config_set_auth(cc, "{", 1), TETHER_RESULT_INVALID_JSON);
    EXPECT_RC(tether_sio_client_config_add_header(cc, "bad header", "v"), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_config_set_reconnection(cc, true, 0, 500, 100, 0.5), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_config_set_reconnection(cc, true, 0, 100, 500, 2.0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_config_set_timeout(cc, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_config_set_path(cc, "no-slash"), TETHER_RESULT_INVALID_PARAMETER);
    tether_sio_client *cl = NULL;
    EXPECT_RC(tether_sio_client_new(rt, "ftp://x", cc, &cl), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_new(rt, NULL, cc, &cl), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_client_new(rt, bad_utf8, cc, &cl), TETHER_RESULT_INVALID_UTF8);
    /* nothing listens on port 1: connecting fails (reconnection off) */
    OK(tether_sio_client_config_set_reconnection(cc, false, 0, 100, 500, 0.5));
    OK(tether_sio_client_new(rt, "http://127.0.0.1:1", cc, &cl));
    tether_sio_client_config_free(cc);
    tether_sio_client_socket *cs = NULL;
    OK(tether_sio_client_socket_new(cl, NULL, &cs));
    tether_result rc = tether_sio_client_socket_connect(cs, 3000);
    CHECK(rc == TETHER_RESULT_CONNECT_FAILED || rc == TETHER_RESULT_TIMEOUT);
    EXPECT_RC(tether_sio_client_socket_emit(cs, "connect", NULL, 0, NULL, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_client_socket_emit(cs, "e", "nope", 4, NULL, 0), TETHER_RESULT_INVALID_JSON);
    EXPECT_RC(tether_sio_client_socket_id(cs, buf, sizeof buf, NULL), TETHER_RESULT_NOT_CONNECTED);
    EXPECT_RC(tether_sio_client_socket_emit_with_ack(cs, "e", NULL, 0, NULL, 0, 10, NULL, NULL),
              TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_client_socket_emit(NULL, "e", NULL, 0, NULL, 0), TETHER_RESULT_NULL_PARAMETER);

    /* JSON helpers */
    const char *j = "[{\"room\":\"r1\",\"n\":5}]";
    OK(tether_json_pointer_string(j, strlen(j), "/0/room", buf, sizeof buf, &n));
    CHECK(strcmp(buf, "r1") == 0 && n == 2);
    OK(tether_json_pointer(j, strlen(j), "/0/n", buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "5") == 0);
    EXPECT_RC(tether_json_pointer_string(j, strlen(j), "/0/n", buf, sizeof buf, NULL), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_json_pointer(j, strlen(j), "/9", buf, sizeof buf, NULL), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_json_pointer(j, strlen(j), "/0", tiny, sizeof tiny, &n), TETHER_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == strlen("{\"n\":5,\"room\":\"r1\"}"));
    OK(tether_json_quote("a\"b", buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "\"a\\\"b\"") == 0);

    /* log */
    EXPECT_RC(tether_log_set_callback(9, NULL, NULL, NULL), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_log_message(0, "x"), TETHER_RESULT_INVALID_PARAMETER);

    /* fork guard: the child cannot use the parent's runtime, and freeing it is safe */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        bad |= tether_sio_server_emit(srv, "/", NULL, "e", NULL, 0, NULL, 0) != TETHER_RESULT_FORKED;
        tether_sio_server *s2 = NULL;
        bad |= tether_sio_server_new(rt, NULL, &s2) != TETHER_RESULT_FORKED;
        bad |= tether_runtime_shutdown(rt, 100) != TETHER_RESULT_FORKED;
        tether_runtime_free(rt); /* leaks the parent's runtime instead of joining absent threads */
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    OK(tether_sio_server_emit(srv, "/", NULL, "e", NULL, 0, NULL, 0)); /* the parent's still works */

    /* after shutdown */
    OK(tether_runtime_shutdown(rt, 3000));
    EXPECT_RC(tether_sio_server_emit(srv, "/", NULL, "e", NULL, 0, NULL, 0), TETHER_RESULT_SHUT_DOWN);
    EXPECT_RC(tether_sio_client_socket_emit(cs, "e", NULL, 0, NULL, 0), TETHER_RESULT_SHUT_DOWN);
    tether_sio_server *srv2 = NULL;
    EXPECT_RC(tether_sio_server_new(rt, NULL, &srv2), TETHER_RESULT_SHUT_DOWN);
    EXPECT_RC(tether_runtime_dispatch(rt, 1, 0, NULL), TETHER_RESULT_WRONG_MODE);

    /* NULL-tolerant frees */
    tether_runtime_free(NULL);
    tether_sio_server_free(NULL);
    tether_sio_server_config_free(NULL);
    tether_sio_client_free(NULL);
    tether_sio_client_config_free(NULL);
    tether_sio_client_socket_free(NULL);
    tether_sio_socket_free(NULL);
    tether_ack_free(NULL);
    tether_sio_connect_request_free(NULL);

    tether_sio_client_socket_free(cs);
    tether_sio_client_free(cl);
    tether_sio_server_free(srv);
    tether_runtime_free(rt);
    printf("errors: ok\n");
    return 0;
}
