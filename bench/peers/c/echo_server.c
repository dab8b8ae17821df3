/* The bench protocol (bench/README.md) served through tether's C ABI (issue 9, S4):
 * event `echo` is emitted back to the sender with the same arguments, `bcast` is
 * broadcast to every other socket. A single-threaded runtime (tokio's current-thread
 * scheduler, as bench_server with THREADS=1), callbacks on its thread.
 *
 *   echo_server PORT        (0 picks a free port; prints "listening on http://127.0.0.1:PORT")
 *
 * Built by bench/run.sh against the release libtether.a; it joins the rotation as
 * "tether-cabi". SIGTERM / SIGINT shut it down. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

static tether_sio_server *server;

static void die(const char *what, tether_result rc) {
    char msg[512] = "";
    tether_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "echo_server: %s: %s: %s\n", what, tether_result_str(rc), msg);
    exit(1);
}

static void on_echo(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    (void)ud;
    tether_sio_socket_emit(socket, "echo", ev->args.json.data, ev->args.json.len, ev->args.bins,
                           ev->args.bins_len);
}

static void on_bcast(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    (void)ud;
    tether_sio_target t;
    memset(&t, 0, sizeof t);
    t.except_socket = tether_sio_socket_id(socket).data; /* everyone but the sender */
    tether_sio_server_emit(server, NULL, &t, "bcast", ev->args.json.data, ev->args.json.len,
                           ev->args.bins, ev->args.bins_len);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: echo_server PORT\n");
        return 2;
    }
    long port = strtol(argv[1], NULL, 10);
    if (port < 0 || port > 65535) {
        fprintf(stderr, "echo_server: bad port %s\n", argv[1]);
        return 2;
    }
    /* Block the signals in every thread (the runtime's inherit the mask); wait below. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    tether_runtime_options opts = {.worker_threads = 1, .delivery = TETHER_DELIVERY_RUNTIME_THREADS,
                                  .single_threaded = true};
    tether_runtime *rt = NULL;
    tether_result rc = tether_runtime_new(&opts, &rt);
    if (rc) die("runtime", rc);
    tether_sio_server_config *cfg = NULL;
    if ((rc = tether_sio_server_config_new(&cfg))) die("config", rc);
    if ((rc = tether_sio_server_config_set_serve_client(cfg, false))) die("config", rc);
    if ((rc = tether_sio_server_new(rt, cfg, &server))) die("server", rc);
    tether_sio_server_config_free(cfg);
    if ((rc = tether_sio_server_on(server, NULL, "echo", on_echo, NULL, NULL))) die("on echo", rc);
    if ((rc = tether_sio_server_on(server, NULL, "bcast", on_bcast, NULL, NULL))) die("on bcast", rc);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%ld", port);
    uint16_t bound = 0;
    if ((rc = tether_sio_server_listen(server, addr, &bound))) die("listen", rc);
    printf("listening on http://127.0.0.1:%u\n", (unsigned)bound);
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    tether_runtime_shutdown(rt, 5000);
    tether_sio_server_free(server);
    tether_runtime_free(rt);
    return 0;
}
