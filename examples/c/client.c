/*
 * client.c URL: connect to a server that behaves like the conformance server
 * (tests/interop/PROTOCOL.md), emit "message-with-ack" with a JSON argument and a
 * binary one, wait for the acknowledgement and check it echoes both.
 * Exit status 0 only when the reply matched.
 *
 *   ./client http://127.0.0.1:3000
 */
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "tether.h"

struct reply {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int matched;
};

static const uint8_t BIN[] = {0x00, 0x01, 0xfe, 0xff, 0x42};

static void on_ack(void *userdata, tether_result status, const tether_sio_args *reply) {
    struct reply *r = userdata;
    int ok = 0;
    if (status == TETHER_RESULT_OK && reply) {
        /* The JSON argument comes back as is, the binary one as a placeholder. */
        int json_ok = strstr(reply->json.data, "{\"hello\":\"world\",\"n\":42}") != NULL;
        int ph_ok = strstr(reply->json.data, "\"_placeholder\":true") != NULL;
        int bin_ok = reply->bins_len == 1 && reply->bins[0].len == sizeof BIN &&
                     memcmp(reply->bins[0].data, BIN, sizeof BIN) == 0;
        ok = json_ok && ph_ok && bin_ok;
        printf("ack: %s (%zu attachment(s)) -> %s\n", reply->json.data, reply->bins_len,
               ok ? "match" : "MISMATCH");
    } else {
        printf("ack failed: %s\n", tether_result_str(status));
    }
    pthread_mutex_lock(&r->lock);
    r->done = 1;
    r->matched = ok;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void print_error(const char *what, tether_result rc) {
    char msg[512];
    tether_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "%s: %s (%s)\n", what, tether_result_str(rc), msg);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s URL\n", argv[0]);
        return 2;
    }
    tether_runtime *rt = NULL;
    tether_sio_client *client = NULL;
    tether_sio_client_socket *sock = NULL;
    struct reply r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int status = 1;
    tether_result rc;

    if ((rc = tether_runtime_new(NULL, &rt)) != TETHER_RESULT_OK) {
        print_error("runtime", rc);
        return 1;
    }
    if ((rc = tether_sio_client_new(rt, argv[1], NULL, &client)) != TETHER_RESULT_OK) {
        print_error("client", rc);
        goto out;
    }
    if ((rc = tether_sio_client_socket_new(client, NULL, &sock)) != TETHER_RESULT_OK) {
        print_error("socket", rc);
        goto out;
    }
    if ((rc = tether_sio_client_socket_connect(sock, 5000)) != TETHER_RESULT_OK) {
        print_error("connect", rc);
        goto out;
    }
    const char *args = "[{\"hello\":\"world\",\"n\":42},{\"_placeholder\":true,\"num\":0}]";
    tether_bytes bin = {BIN, sizeof BIN};
    rc = tether_sio_client_socket_emit_with_ack(sock, "message-with-ack", args, strlen(args), &bin,
                                                1, 5000, on_ack, &r);
    if (rc != TETHER_RESULT_OK) {
        print_error("emit", rc);
        goto out;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&r.lock);
    while (!r.done) {
        if (pthread_cond_timedwait(&r.cond, &r.lock, &deadline) != 0) break;
    }
    status = r.done && r.matched ? 0 : 1;
    pthread_mutex_unlock(&r.lock);

out:
    tether_sio_client_socket_free(sock);
    tether_sio_client_free(client);
    if ((rc = tether_runtime_shutdown(rt, 5000)) != TETHER_RESULT_OK) print_error("shutdown", rc);
    tether_runtime_free(rt);
    return status;
}
