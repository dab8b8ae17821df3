// ws_echo.cpp: plain WebSocket with the C++ wrapper (bindings/cpp/tether.hpp).
//
// A WebSocket server at /echo answers every message with the same message; a client
// connects with a subprotocol, sends a text and a binary message, checks the echoes,
// then closes with code 4000 and a reason, which the server sees. Exit status 0 when
// everything matched.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "tether.hpp"

static bool wait_until(const std::atomic<int> &v, int n) {
    for (int i = 0; i < 1000 && v.load() < n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return v.load() >= n;
}

int main() {
    try {
        tether::Runtime rt;
        std::atomic<int> server_closed{0}, got{0};
        uint16_t close_code = 0;
        std::string close_reason, texts, protocol;
        std::mutex mu;

        tether::WsHandlers sh;
        sh.on_message = [](tether::WsConnRef c, bool binary, std::string_view data) {
            if (binary) c.send_binary(data.data(), data.size());
            else c.send_text(data);
        };
        sh.on_close = [&](tether::WsConnRef, uint16_t code, std::string_view reason, bool by_peer) {
            std::lock_guard<std::mutex> g(mu);
            close_code = by_peer ? code : 0;
            close_reason = std::string(reason);
            server_closed++;
        };
        tether::WsOptions so;
        so.path = "/echo";
        so.subprotocols = {"echo.v1"};
        tether::WsServer server(rt, sh, so);
        uint16_t port = server.listen("127.0.0.1:0");

        tether::WsHandlers ch;
        ch.on_message = [&](tether::WsConnRef, bool binary, std::string_view data) {
            std::lock_guard<std::mutex> g(mu);
            texts += binary ? "[bin:" + std::to_string(data.size()) + "]" : std::string(data);
            got++;
        };
        tether::WsOptions co;
        co.subprotocols = {"echo.v1"};
        tether::WsClient client(rt, ch, co);
        tether::WsConn conn = client.connect("ws://127.0.0.1:" + std::to_string(port) + "/echo");
        protocol = std::string(conn.protocol());
        conn.send_text("hello");
        const unsigned char bin[4] = {0, 1, 2, 3};
        conn.send_binary(bin, sizeof bin);
        if (!wait_until(got, 2)) throw std::runtime_error("no echo");
        try {
            conn.close(1005); // reserved: refused
            throw std::runtime_error("close(1005) was accepted");
        } catch (const tether::error &e) {
            if (e.code() != TETHER_RESULT_INVALID_PARAMETER) throw;
        }
        conn.close(4000, "done");
        if (!wait_until(server_closed, 1)) throw std::runtime_error("no close on the server");
        rt.shutdown();
        std::lock_guard<std::mutex> g(mu);
        std::printf("protocol %s, echoes %s, server saw close %u %s\n", protocol.c_str(), texts.c_str(),
                    (unsigned)close_code, close_reason.c_str());
        bool ok = protocol == "echo.v1" && texts == "hello[bin:4]" && close_code == 4000 && close_reason == "done";
        return ok ? 0 : 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "ws_echo: %s\n", e.what());
        return 1;
    }
}
