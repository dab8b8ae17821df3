/*
 * chat_server.c: the tutorials' chat, in C, on tether's C API.
 *
 *   ./chat_server [--port N] [--page PATH]     (default port 3000)
 *
 * Events (the same as examples/chat.rs and the page examples/chat/index.html, served
 * at "/"):
 *   "chat message", msg              -> "chat message", msg to everyone, sender included
 *   "joinRoom", room                 -> the sender joins room
 *   "roomMessage", {room, message}   -> "roomMessage", {sender, message} to the room
 *   "privateMessage", {recipientId, message}
 *                                    -> "privateMessage", {sender, message} to that socket
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections; stops on
 * SIGINT / SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

#ifndef TETHER_CHAT_PAGE
#define TETHER_CHAT_PAGE "examples/chat/index.html"
#endif

static void on_chat_message(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    tether_sio_server *server = ud;
    (void)socket;
    /* io.emit: everyone, the sender included, with the same arguments. */
    tether_sio_server_emit(server, "/", NULL, "chat message", ev->args.json.data,
                           ev->args.json.len, ev->args.bins, ev->args.bins_len);
}

static void on_join_room(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    (void)ud;
    char room[256];
    if (tether_json_pointer_string(ev->args.json.data, ev->args.json.len, "/0", room,
                                   sizeof room, NULL) == TETHER_RESULT_OK) {
        tether_sio_socket_join(socket, room);
        fprintf(stderr, "%s joined room %s\n", tether_sio_socket_id(socket).data, room);
    }
}

/* Send {sender, message} as `event` to the room `to` (a room name or a socket id). */
static void relay(tether_sio_server *server, tether_sio_socket *from, const tether_sio_event *ev,
                  const char *to_field, const char *event) {
    char to[256], message[8192], payload[8192 + 512];
    const char *json = ev->args.json.data;
    size_t len = ev->args.json.len;
    if (tether_json_pointer_string(json, len, to_field, to, sizeof to, NULL) != TETHER_RESULT_OK)
        return;
    if (tether_json_pointer(json, len, "/0/message", message, sizeof message, NULL) !=
        TETHER_RESULT_OK)
        return;
    /* Socket ids are URL-safe base64: no escaping needed. */
    int n = snprintf(payload, sizeof payload, "[{\"sender\":\"%s\",\"message\":%s}]",
                     tether_sio_socket_id(from).data, message);
    if (n < 0 || (size_t)n >= sizeof payload) return;
    const char *rooms[1] = {to};
    tether_sio_target target = {rooms, 1, NULL, 0, NULL, false};
    tether_sio_server_emit(server, "/", &target, event, payload, (size_t)n, NULL, 0);
}

static void on_room_message(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    relay(ud, socket, ev, "/0/room", "roomMessage");
}

static void on_private_message(void *ud, tether_sio_socket *socket, const tether_sio_event *ev) {
    relay(ud, socket, ev, "/0/recipientId", "privateMessage");
}

static void on_connection(void *ud, tether_sio_socket *socket) {
    (void)ud;
    fprintf(stderr, "user connected: %s\n", tether_sio_socket_id(socket).data);
}

static void on_disconnect(void *ud, tether_sio_socket *socket, tether_str reason) {
    (void)ud;
    fprintf(stderr, "user disconnected: %s (%s)\n", tether_sio_socket_id(socket).data,
            reason.data);
}

static int fail(const char *what, tether_result rc) {
    char msg[512];
    tether_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "%s: %s: %s\n", what, tether_result_str(rc), msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *page = TETHER_CHAT_PAGE;
    long port = 3000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) {
                fprintf(stderr, "--port needs a number\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc) {
            page = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--port N] [--page PATH]\n", argv[0]);
            return 2;
        }
    }

    /* Block the stop signals before the runtime's threads start: they inherit the mask,
     * and the main thread waits for the signals with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    tether_runtime *rt = NULL;
    tether_sio_server *server = NULL;
    tether_result rc;
    if ((rc = tether_runtime_new(NULL, &rt))) return fail("runtime", rc);
    if ((rc = tether_sio_server_new(rt, NULL, &server))) return fail("server", rc);
    if ((rc = tether_sio_server_add_file(server, "/", "text/html; charset=utf-8", page)))
        return fail("page", rc);
    tether_sio_server_on_connection(server, "/", on_connection, NULL, NULL);
    tether_sio_server_on_disconnect(server, "/", on_disconnect, NULL, NULL);
    tether_sio_server_on(server, "/", "chat message", on_chat_message, server, NULL);
    tether_sio_server_on(server, "/", "joinRoom", on_join_room, NULL, NULL);
    tether_sio_server_on(server, "/", "roomMessage", on_room_message, server, NULL);
    tether_sio_server_on(server, "/", "privateMessage", on_private_message, server, NULL);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%ld", port);
    uint16_t bound = 0;
    if ((rc = tether_sio_server_listen(server, addr, &bound))) return fail("listen", rc);
    printf("listening on http://127.0.0.1:%u\n", (unsigned)bound);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "stopping (signal %d)\n", sig);
    rc = tether_runtime_shutdown(rt, 3000);
    tether_sio_server_free(server);
    tether_runtime_free(rt);
    return rc == TETHER_RESULT_OK ? 0 : 1;
}
