/* TLS from C: a CA and a server certificate are made with the openssl CLI in a temp
 * directory; a Socket.IO server and a WebSocket server serve TLS with them; clients
 * that trust the CA talk to them, clients that trust another CA fail with a clear
 * error, and the loudly named opt-out connects without verification. */
#include "common.h"

#include <stdbool.h>
#include <unistd.h>

static char dir[64];

static void sh(const char *fmt, const char *arg) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, arg, arg, arg, arg, arg, arg);
    if (system(cmd) != 0) {
        fprintf(stderr, "command failed: %s\n", cmd);
        exit(1);
    }
}

static void path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static void make_pki(void) {
    snprintf(dir, sizeof dir, "/tmp/tether-tls-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    const char *q = ">/dev/null 2>&1";
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
             "-keyout ca.key -out ca.pem -subj /CN=tether-test-ca %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
             "-keyout other.key -out other.pem -subj /CN=tether-other-ca %s && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout server.key -out server.csr -subj /CN=localhost %s && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
             "extendedKeyUsage=serverAuth\\n' > ext.cnf && "
             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile ext.cnf -out server.pem %s",
             dir, q, q, q, q);
    sh("%s", cmd);
}

static uint8_t *slurp(const char *name, size_t *len) {
    char p[256];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL);
    static uint8_t bufs[4][8192];
    static int next;
    uint8_t *b = bufs[next++ % 4];
    *len = fread(b, 1, sizeof bufs[0], f);
    fclose(f);
    return b;
}

/* ---- Socket.IO: echo with ack */
static void sio_echo(void *ud, tether_sio_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    if (ev->ack) CHECK(tether_ack_send(ev->ack, ev->args.json.data, ev->args.json.len, NULL, 0) == TETHER_RESULT_OK);
}

static atomic_int acked;
static char ack_text[128];
static void on_ack(void *ud, tether_result status, const tether_sio_args *reply) {
    (void)ud;
    CHECK(status == TETHER_RESULT_OK);
    snprintf(ack_text, sizeof ack_text, "%.*s", (int)reply->json.len, reply->json.data);
    atomic_fetch_add(&acked, 1);
}

static tether_sio_client_config *client_config(int transports) {
    tether_sio_client_config *c = NULL;
    OK(tether_sio_client_config_new(&c));
    OK(tether_sio_client_config_set_transports(c, (uint32_t)transports));
    OK(tether_sio_client_config_set_reconnection(c, false, 0, 1000, 5000, 0.5));
    OK(tether_sio_client_config_set_timeout(c, 5000));
    return c;
}

static tether_result sio_connect(tether_runtime *rt, const char *url, tether_sio_client_config *cfg,
                                 tether_sio_client **client_out, tether_sio_client_socket **sock_out) {
    OK(tether_sio_client_new(rt, url, cfg, client_out));
    OK(tether_sio_client_socket_new(*client_out, NULL, sock_out));
    return tether_sio_client_socket_connect(*sock_out, 5000);
}

/* ---- WebSocket: echo */
static void ws_echo(void *ud, tether_ws_conn *c, bool binary, const uint8_t *data, size_t len) {
    (void)ud;
    (void)binary;
    CHECK(tether_ws_conn_send_text(c, (const char *)data, len) == TETHER_RESULT_OK);
}

static atomic_int ws_got;
static char ws_text[64];
static void ws_client_msg(void *ud, tether_ws_conn *c, bool binary, const uint8_t *data, size_t len) {
    (void)ud;
    (void)c;
    (void)binary;
    snprintf(ws_text, sizeof ws_text, "%.*s", (int)len, (const char *)data);
    atomic_fetch_add(&ws_got, 1);
}

int main(void) {
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        printf("test_tls: SKIPPED: the openssl CLI is not installed (apt-get install -y openssl)\n");
        return 0;
    }
    make_pki();
    char cert[256], key[256], ca[256], other[256], bogus[256];
    path(cert, sizeof cert, "server.pem");
    path(key, sizeof key, "server.key");
    path(ca, sizeof ca, "ca.pem");
    path(other, sizeof other, "other.pem");
    path(bogus, sizeof bogus, "ext.cnf");

    tether_runtime *rt = NULL;
    OK(tether_runtime_new(NULL, &rt));

    /* ---- Socket.IO server over TLS */
    tether_sio_server_config *scfg = NULL;
    OK(tether_sio_server_config_new(&scfg));
    EXPECT_RC(tether_sio_server_config_set_tls_files(scfg, "/nonexistent/cert.pem", key), TETHER_RESULT_IO);
    EXPECT_RC(tether_sio_server_config_set_tls_files(scfg, bogus, key), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_tls_files(scfg, cert, NULL), TETHER_RESULT_NULL_PARAMETER);
    EXPECT_RC(tether_sio_server_config_set_tls_pem(scfg, NULL, 0, NULL, 0), TETHER_RESULT_INVALID_PARAMETER);
    OK(tether_sio_server_config_set_tls_files(scfg, cert, key));
    tether_sio_server *server = NULL;
    OK(tether_sio_server_new(rt, scfg, &server));
    tether_sio_server_config_free(scfg);
    OK(tether_sio_server_on(server, NULL, "echo", sio_echo, NULL, NULL));
    uint16_t port = 0;
    OK(tether_sio_server_listen(server, "127.0.0.1:0", &port));
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u", (unsigned)port);

    /* trusting the CA: polling, then the upgrade to wss */
    {
        tether_sio_client_config *c = client_config(TETHER_TRANSPORT_POLLING | TETHER_TRANSPORT_WEBSOCKET);
        EXPECT_RC(tether_sio_client_config_add_ca_file(c, "/nonexistent/ca.pem"), TETHER_RESULT_IO);
        EXPECT_RC(tether_sio_client_config_add_ca_pem(c, (const uint8_t *)"nope", 4), TETHER_RESULT_INVALID_PARAMETER);
        OK(tether_sio_client_config_add_ca_file(c, ca));
        tether_sio_client *cl = NULL;
        tether_sio_client_socket *so = NULL;
        OK(sio_connect(rt, url, c, &cl, &so));
        const char *args = "[\"over tls\",1]";
        OK(tether_sio_client_socket_emit_with_ack(so, "echo", args, strlen(args), NULL, 0, 5000, on_ack, NULL));
        WAIT(acked, 1);
        CHECK(strcmp(ack_text, args) == 0);
        tether_sio_client_socket_free(so);
        tether_sio_client_free(cl);
        tether_sio_client_config_free(c);
    }
    /* CA given as bytes, websocket only */
    {
        tether_sio_client_config *c = client_config(TETHER_TRANSPORT_WEBSOCKET);
        size_t n = 0;
        const uint8_t *pem = slurp("ca.pem", &n);
        OK(tether_sio_client_config_add_ca_pem(c, pem, n));
        tether_sio_client *cl = NULL;
        tether_sio_client_socket *so = NULL;
        OK(sio_connect(rt, url, c, &cl, &so));
        OK(tether_sio_client_socket_emit_with_ack(so, "echo", "[2]", 3, NULL, 0, 5000, on_ack, NULL));
        WAIT(acked, 2);
        CHECK(strcmp(ack_text, "[2]") == 0);
        tether_sio_client_socket_free(so);
        tether_sio_client_free(cl);
        tether_sio_client_config_free(c);
    }
    /* trusting another CA: a clear error */
    for (int t = 1; t <= 2; t++) {
        tether_sio_client_config *c = client_config(t);
        OK(tether_sio_client_config_add_ca_file(c, other));
        tether_sio_client *cl = NULL;
        tether_sio_client_socket *so = NULL;
        EXPECT_RC(sio_connect(rt, url, c, &cl, &so), TETHER_RESULT_CONNECT_FAILED);
        char m[512];
        tether_last_error_message(m, sizeof m, NULL);
        CHECK(strstr(m, "certificate") != NULL || strstr(m, "Certificate") != NULL || strstr(m, "UnknownIssuer") != NULL);
        printf("wrong CA (transport %d): %s\n", t, m);
        tether_sio_client_socket_free(so);
        tether_sio_client_free(cl);
        tether_sio_client_config_free(c);
    }
    /* no CA at all (Mozilla roots only): refused too */
    {
        tether_sio_client_config *c = client_config(TETHER_TRANSPORT_WEBSOCKET);
        tether_sio_client *cl = NULL;
        tether_sio_client_socket *so = NULL;
        EXPECT_RC(sio_connect(rt, url, c, &cl, &so), TETHER_RESULT_CONNECT_FAILED);
        tether_sio_client_socket_free(so);
        tether_sio_client_free(cl);
        tether_sio_client_config_free(c);
    }
    /* the opt-out */
    {
        tether_sio_client_config *c = client_config(TETHER_TRANSPORT_WEBSOCKET);
        OK(tether_sio_client_config_danger_accept_invalid_certs(c, true));
        tether_sio_client *cl = NULL;
        tether_sio_client_socket *so = NULL;
        OK(sio_connect(rt, url, c, &cl, &so));
        tether_sio_client_socket_free(so);
        tether_sio_client_free(cl);
        tether_sio_client_config_free(c);
    }

    /* ---- WebSocket server over TLS */
    tether_ws_config *wcfg = NULL;
    OK(tether_ws_config_new(&wcfg));
    {
        size_t cn = 0, kn = 0;
        const uint8_t *c = slurp("server.pem", &cn);
        const uint8_t *k = slurp("server.key", &kn);
        EXPECT_RC(tether_ws_config_set_tls_pem(wcfg, c, cn, c, cn), TETHER_RESULT_INVALID_PARAMETER); /* no key */
        OK(tether_ws_config_set_tls_pem(wcfg, c, cn, k, kn));
    }
    tether_ws_callbacks scb;
    memset(&scb, 0, sizeof scb);
    scb.on_message = ws_echo;
    tether_ws_server *ws = NULL;
    OK(tether_ws_server_new(rt, wcfg, &scb, &ws));
    tether_ws_config_free(wcfg);
    uint16_t wport = 0;
    OK(tether_ws_server_listen(ws, "127.0.0.1:0", &wport));
    char wurl[128];
    snprintf(wurl, sizeof wurl, "wss://localhost:%u/", (unsigned)wport);

    tether_ws_callbacks ccb;
    memset(&ccb, 0, sizeof ccb);
    ccb.on_message = ws_client_msg;
    {
        tether_ws_config *c = NULL;
        OK(tether_ws_config_new(&c));
        OK(tether_ws_config_add_ca_file(c, ca));
        tether_ws_client *cl = NULL;
        OK(tether_ws_client_new(rt, c, &ccb, &cl));
        tether_ws_config_free(c);
        tether_ws_conn *conn = NULL;
        OK(tether_ws_client_connect(cl, wurl, 5000, &conn));
        OK(tether_ws_conn_send_text(conn, "secure", 6));
        WAIT(ws_got, 1);
        CHECK(strcmp(ws_text, "secure") == 0);
        tether_ws_conn_free(conn);
        tether_ws_client_free(cl);
    }
    {
        tether_ws_config *c = NULL;
        OK(tether_ws_config_new(&c));
        OK(tether_ws_config_add_ca_file(c, other));
        tether_ws_client *cl = NULL;
        OK(tether_ws_client_new(rt, c, &ccb, &cl));
        tether_ws_config_free(c);
        EXPECT_RC(tether_ws_client_connect(cl, wurl, 5000, NULL), TETHER_RESULT_CONNECT_FAILED);
        char m[512];
        tether_last_error_message(m, sizeof m, NULL);
        CHECK(strstr(m, "tls") != NULL);
        printf("wss wrong CA: %s\n", m);
        tether_ws_client_free(cl);
    }
    {
        tether_ws_config *c = NULL;
        OK(tether_ws_config_new(&c));
        OK(tether_ws_config_danger_accept_invalid_certs(c, true));
        tether_ws_client *cl = NULL;
        OK(tether_ws_client_new(rt, c, &ccb, &cl));
        tether_ws_config_free(c);
        tether_ws_conn *conn = NULL;
        OK(tether_ws_client_connect(cl, wurl, 5000, &conn));
        OK(tether_ws_conn_send_text(conn, "again", 5));
        WAIT(ws_got, 2);
        tether_ws_conn_free(conn);
        tether_ws_client_free(cl);
    }

    OK(tether_runtime_shutdown(rt, 5000));
    tether_ws_server_free(ws);
    tether_sio_server_free(server);
    tether_runtime_free(rt);
    sh("rm -rf '%s'", dir);
    printf("test_tls: ok\n");
    return 0;
}
