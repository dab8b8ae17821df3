/*
 * game_loop.c: the game-loop model. One host-poll runtime holds a tether server and
 * BOTS clients; a fixed-timestep loop moves the bots, sends their positions, and calls
 * tether_runtime_dispatch() once per frame: every callback (server and clients) runs
 * here, on the game thread, between frames. Each bot sees the others' positions
 * through the server.
 *
 *   ./game_loop [frames]      (default 120 frames at 60 Hz)
 *
 * Exit status 0 when every bot saw every other bot move.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tether.h"

#define BOTS 4
#define FRAME_NS 16666667L /* 60 Hz */

struct bot {
    int index;
    tether_sio_client *client;
    tether_sio_client_socket *socket;
    double x, y;
    double seen_x[BOTS], seen_y[BOTS];
    int seen[BOTS]; /* positions received from each other bot */
};

static struct bot bots[BOTS];
static tether_sio_server *server;

/* Server: relay a bot's "move" to every other bot as "position". */
static void on_move(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    (void)ud;
    tether_sio_target others = {NULL, 0, NULL, 0, tether_sio_socket_id(socket).data, true};
    tether_sio_server_emit(server, "/", &others, "position", ev->args.json.data,
                           ev->args.json.len, NULL, 0);
}

/* Bot: another bot moved. */
static void on_position(void *ud, tether_sio_client_socket *socket, const tether_sio_event *ev) {
    (void)socket;
    struct bot *me = ud;
    char v[64];
    const char *j = ev->args.json.data;
    size_t n = ev->args.json.len;
    if (tether_json_pointer(j, n, "/0/bot", v, sizeof v, NULL)) return;
    int who = atoi(v);
    if (who < 0 || who >= BOTS || who == me->index) return;
    if (tether_json_pointer(j, n, "/0/x", v, sizeof v, NULL) == TETHER_RESULT_OK)
        me->seen_x[who] = atof(v);
    if (tether_json_pointer(j, n, "/0/y", v, sizeof v, NULL) == TETHER_RESULT_OK)
        me->seen_y[who] = atof(v);
    me->seen[who]++;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(const char *what, tether_result rc) {
    char msg[512];
    tether_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "%s: %s: %s\n", what, tether_result_str(rc), msg);
    return 1;
}

int main(int argc, char **argv) {
    int frames = argc > 1 ? atoi(argv[1]) : 120;
    tether_runtime_options opts = {2, TETHER_DELIVERY_HOST_POLL, false};
    tether_runtime *rt = NULL;
    tether_result rc;
    if ((rc = tether_runtime_new(&opts, &rt))) return fail("runtime", rc);
    if ((rc = tether_sio_server_new(rt, NULL, &server))) return fail("server", rc);
    tether_sio_server_on(server, "/", "move", on_move, NULL, NULL);
    uint16_t port = 0;
    if ((rc = tether_sio_server_listen(server, "127.0.0.1:0", &port))) return fail("listen", rc);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)port);

    tether_sio_client_config *cfg = NULL;
    tether_sio_client_config_new(&cfg);
    tether_sio_client_config_set_transports(cfg, TETHER_TRANSPORT_WEBSOCKET);
    for (int i = 0; i < BOTS; i++) {
        struct bot *b = &bots[i];
        b->index = i;
        if ((rc = tether_sio_client_new(rt, url, cfg, &b->client))) return fail("client", rc);
        if ((rc = tether_sio_client_socket_new(b->client, NULL, &b->socket)))
            return fail("socket", rc);
        tether_sio_client_socket_on(b->socket, "position", on_position, b, NULL);
        /* Waiting here is fine: connecting needs no dispatch. */
        if ((rc = tether_sio_client_socket_connect(b->socket, 5000))) return fail("connect", rc);
    }
    tether_sio_client_config_free(cfg);

    double start = now_s(), next = start, worst = 0;
    size_t events = 0;
    for (int frame = 0; frame < frames; frame++) {
        /* Simulate: each bot walks its own circle. */
        for (int i = 0; i < BOTS; i++) {
            struct bot *b = &bots[i];
            double t = frame / 60.0;
            b->x = 100.0 * i + 10.0 * cos(t + i);
            b->y = 10.0 * sin(t + i);
            char msg[128];
            int n = snprintf(msg, sizeof msg, "[{\"bot\":%d,\"x\":%.3f,\"y\":%.3f}]", i, b->x, b->y);
            tether_sio_client_socket_emit_volatile(b->socket, "move", msg, (size_t)n, NULL, 0);
        }
        /* Network: run this frame's callbacks, within a 4 ms budget. */
        double d0 = now_s();
        size_t ran = 0;
        if ((rc = tether_runtime_dispatch(rt, 1024, 4, &ran))) return fail("dispatch", rc);
        double spent = now_s() - d0;
        if (spent > worst) worst = spent;
        events += ran;
        /* Sleep to the next frame. */
        next += FRAME_NS / 1e9;
        double left = next - now_s();
        if (left > 0) {
            struct timespec ts = {0, (long)(left * 1e9)};
            nanosleep(&ts, NULL);
        }
    }

    int ok = 1;
    for (int i = 0; i < BOTS; i++) {
        printf("bot %d saw:", i);
        for (int j = 0; j < BOTS; j++) {
            if (j == i) continue;
            printf(" bot%d x%d (last %.1f,%.1f)", j, bots[i].seen[j], bots[i].seen_x[j],
                   bots[i].seen_y[j]);
            if (bots[i].seen[j] == 0) ok = 0;
        }
        printf("\n");
    }
    printf("%d frames in %.2f s, %zu callbacks, slowest dispatch %.1f ms\n", frames,
           now_s() - start, events, worst * 1000);

    rc = tether_runtime_shutdown(rt, 3000);
    for (int i = 0; i < BOTS; i++) {
        tether_sio_client_socket_free(bots[i].socket);
        tether_sio_client_free(bots[i].client);
    }
    tether_sio_server_free(server);
    tether_runtime_free(rt);
    if (rc) return fail("shutdown", rc);
    printf(ok ? "ok\n" : "FAILED: a bot missed another\n");
    return ok ? 0 : 1;
}
