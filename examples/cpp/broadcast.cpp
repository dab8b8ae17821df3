// broadcast.cpp: the tutorials' broadcast demo with the C++ wrapper (bindings/cpp/tether.hpp).
//
// A server relays "broadcast" to every other socket as "broadcast-message"; three clients
// connect, the first one broadcasts, the other two receive it and the sender does not.
// Exit status 0 when exactly the two others got it.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tether.hpp"

int main() {
    try {
        tether::Runtime rt;
        tether::Server server(rt);
        server.on("broadcast", [&server](tether::SocketRef from, const tether::Event &ev) {
            // socket.broadcast.emit: everyone in the namespace but the sender
            tether::Target others;
            others.except_socket = std::string(from.id());
            server.emit("broadcast-message", ev.json(), others);
        });
        uint16_t port = server.listen("127.0.0.1:0");
        std::string url = "http://127.0.0.1:" + std::to_string(port);
        std::printf("server on %s\n", url.c_str());

        std::atomic<int> received[3] = {};
        std::vector<tether::Client> clients;
        std::vector<tether::ClientSocket> sockets;
        for (int i = 0; i < 3; i++) {
            clients.emplace_back(rt, url);
            sockets.push_back(clients.back().socket());
            sockets.back().on("broadcast-message", [&received, i](tether::ClientSocketRef, const tether::Event &ev) {
                std::printf("client %d got %.*s\n", i, static_cast<int>(ev.json().size()), ev.json().data());
                received[i]++;
            });
            sockets.back().connect(5000);
        }
        while (server.socket_count() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));

        sockets[0].emit("broadcast", R"(["hello everyone",{"from":0}])");
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while ((received[1] < 1 || received[2] < 1) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        std::this_thread::sleep_for(std::chrono::milliseconds(100)); // would the sender get it?

        rt.shutdown(3000);
        bool ok = received[0] == 0 && received[1] == 1 && received[2] == 1;
        std::printf("%s\n", ok ? "ok" : "FAILED");
        return ok ? 0 : 1;
    } catch (const tether::error &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
