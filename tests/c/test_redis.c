/* Redis from C: a redis-server is started on a free loopback port; two Socket.IO
 * servers in this process share it through the Redis adapter, so a client of server A
 * gets a broadcast emitted on server B; an emitter (not a server) reaches the client
 * too, with rooms and exceptions honoured. Skipped, saying so, without redis-server. */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t redis_pid;

static uint16_t free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t n = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &n) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Start redis-server (before any runtime exists: fork from a single thread). */
static uint16_t start_redis(void) {
    uint16_t port = free_port();
    char p[16];
    snprintf(p, sizeof p, "%u", (unsigned)port);
    redis_pid = fork();
    CHECK(redis_pid >= 0);
    if (redis_pid == 0) {
        if (!freopen("/dev/null", "w", stdout)) _exit(126);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    double end = now_ms() + 10000;
    while (!port_open(port)) {
        int st;
        if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) {
            fprintf(stderr, "redis-server exited early\n");
            exit(1);
        }
        CHECK(now_ms() < end);
        sleep_ms(10);
    }
    return port;
}

static void stop_redis(void) {
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
}

/* Server A: each socket joins "room1" and is welcomed (so the client knows the join
 * happened). */
static void a_on_connection(void *ud, tether_sio_socket *s) {
    (void)ud;
    CHECK(tether_sio_socket_join(s, "room1") == TETHER_RESULT_OK);
    CHECK(tether_sio_socket_emit(s, "welcome", NULL, 0, NULL, 0) == TETHER_RESULT_OK);
}

static atomic_int welcomed, news;
static char last_news[256];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_welcome(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    (void)ev;
    atomic_fetch_add(&welcomed, 1);
}

static void on_news(void *ud, tether_sio_client_socket *s, const tether_sio_event *ev) {
    (void)ud;
    (void)s;
    pthread_mutex_lock(&mu);
    snprintf(last_news, sizeof last_news, "%.*s", (int)ev->args.json.len, ev->args.json.data);
    pthread_mutex_unlock(&mu);
    atomic_fetch_add(&news, 1);
}

static void expect_news(int n, const char *json) {
    WAIT(news, n);
    pthread_mutex_lock(&mu);
    if (strcmp(last_news, json) != 0) {
        fprintf(stderr, "news: got %s, expected %s\n", last_news, json);
        exit(1);
    }
    pthread_mutex_unlock(&mu);
}

static tether_sio_server *cluster_server(tether_runtime *rt, const char *redis_url, uint16_t *port) {
    tether_sio_server_config *c = NULL;
    OK(tether_sio_server_config_new(&c));
    OK(tether_sio_server_config_set_redis(c, redis_url, "ctest", 2000));
    tether_sio_server *s = NULL;
    OK(tether_sio_server_new(rt, c, &s));
    tether_sio_server_config_free(c);
    OK(tether_sio_server_on_connection(s, NULL, a_on_connection, NULL, NULL));
    OK(tether_sio_server_listen(s, "127.0.0.1:0", port));
    return s;
}

int main(void) {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        printf("test_redis: SKIPPED: redis-server is not installed (apt-get install -y redis-server)\n");
        return 0;
    }
    uint16_t rport = start_redis();
    atexit(stop_redis);
    char redis_url[64];
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%u", (unsigned)rport);

    tether_runtime *rt = NULL;
    OK(tether_runtime_new(NULL, &rt));

    /* config errors */
    {
        tether_sio_server_config *c = NULL;
        OK(tether_sio_server_config_new(&c));
        EXPECT_RC(tether_sio_server_config_set_redis(c, "http://x", NULL, 0), TETHER_RESULT_INVALID_PARAMETER);
        EXPECT_RC(tether_sio_server_config_set_redis(c, NULL, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
        EXPECT_RC(tether_sio_server_config_set_redis(c, redis_url, "", 0), TETHER_RESULT_INVALID_PARAMETER);
        /* nothing listens there: the server cannot be made */
        char dead[64];
        snprintf(dead, sizeof dead, "redis://127.0.0.1:%u", (unsigned)free_port());
        OK(tether_sio_server_config_set_redis(c, dead, NULL, 0));
        tether_sio_server *s = NULL;
        EXPECT_RC(tether_sio_server_new(rt, c, &s), TETHER_RESULT_CONNECT_FAILED);
        CHECK(s == NULL);
        tether_redis_emitter *e = NULL;
        EXPECT_RC(tether_redis_emitter_new(rt, dead, NULL, &e), TETHER_RESULT_CONNECT_FAILED);
        EXPECT_RC(tether_redis_emitter_new(rt, "nonsense", NULL, &e), TETHER_RESULT_INVALID_PARAMETER);
        EXPECT_RC(tether_redis_emitter_new(rt, redis_url, NULL, NULL), TETHER_RESULT_NULL_PARAMETER);
        tether_sio_server_config_free(c);
    }

    uint16_t pa = 0, pb = 0;
    tether_sio_server *a = cluster_server(rt, redis_url, &pa);
    tether_sio_server *b = cluster_server(rt, redis_url, &pb);

    /* a client of server A, in room1 */
    char url[64];
    url_for(url, sizeof url, pa);
    tether_sio_client_config *cc = ws_config();
    tether_sio_client *client = NULL;
    OK(tether_sio_client_new(rt, url, cc, &client));
    tether_sio_client_config_free(cc);
    tether_sio_client_socket *so = NULL;
    OK(tether_sio_client_socket_new(client, NULL, &so));
    OK(tether_sio_client_socket_on(so, "welcome", on_welcome, NULL, NULL));
    OK(tether_sio_client_socket_on(so, "news", on_news, NULL, NULL));
    OK(tether_sio_client_socket_connect(so, 5000));
    WAIT(welcomed, 1);
    CHECK(tether_sio_server_socket_count(b, NULL) == 0);

    /* emitted on B, to room1: reaches A's socket */
    const char *room1[] = {"room1"};
    tether_sio_target t;
    memset(&t, 0, sizeof t);
    t.rooms = room1;
    t.rooms_len = 1;
    const char *m1 = "[\"from B\",{\"n\":1}]";
    OK(tether_sio_server_emit(b, NULL, &t, "news", m1, strlen(m1), NULL, 0));
    expect_news(1, m1);
    /* broadcast to everyone of "/" on B: reaches it too */
    OK(tether_sio_server_emit(b, NULL, NULL, "news", "[\"all\"]", 7, NULL, 0));
    expect_news(2, "[\"all\"]");

    /* the emitter */
    tether_redis_emitter *em = NULL;
    OK(tether_redis_emitter_new(rt, redis_url, "ctest", &em));
    EXPECT_RC(tether_redis_emitter_emit(em, NULL, NULL, "connect", NULL, 0, NULL, 0), TETHER_RESULT_INVALID_PARAMETER);
    EXPECT_RC(tether_redis_emitter_emit(em, NULL, NULL, "news", "{", 1, NULL, 0), TETHER_RESULT_INVALID_JSON);
    EXPECT_RC(tether_redis_emitter_emit(NULL, NULL, NULL, "news", NULL, 0, NULL, 0), TETHER_RESULT_NULL_PARAMETER);
    /* except room1: must not arrive; then to room1 with a binary attachment: arrives */
    tether_sio_target ex;
    memset(&ex, 0, sizeof ex);
    ex.except = room1;
    ex.except_len = 1;
    OK(tether_redis_emitter_emit(em, NULL, &ex, "news", "[\"skipped\"]", 11, NULL, 0));
    const uint8_t blob[3] = {1, 2, 3};
    tether_bytes bins[1] = {{blob, 3}};
    const char *m2 = "[\"from emitter\",{\"_placeholder\":true,\"num\":0}]";
    OK(tether_redis_emitter_emit(em, "/", &t, "news", m2, strlen(m2), bins, 1));
    expect_news(3, m2);
    /* another key prefix does not reach this cluster */
    tether_redis_emitter *other = NULL;
    OK(tether_redis_emitter_new(rt, redis_url, NULL, &other));
    OK(tether_redis_emitter_emit(other, NULL, NULL, "news", "[\"other cluster\"]", 17, NULL, 0));
    OK(tether_redis_emitter_emit(em, NULL, NULL, "news", "[\"last\"]", 8, NULL, 0));
    expect_news(4, "[\"last\"]");
    sleep_ms(100);
    CHECK(atomic_load(&news) == 4);

    tether_redis_emitter_free(other);
    tether_redis_emitter_free(em);
    tether_redis_emitter_free(NULL);
    tether_sio_client_socket_free(so);
    OK(tether_runtime_shutdown(rt, 5000));
    tether_sio_client_free(client);
    tether_sio_server_free(a);
    tether_sio_server_free(b);
    tether_runtime_free(rt);
    stop_redis();
    printf("test_redis: ok\n");
    return 0;
}
