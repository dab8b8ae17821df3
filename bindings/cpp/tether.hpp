// tether.hpp: header-only C++17 RAII wrapper over the tether C API (include/tether.h).
//
// - Handles are move-only owners; their destructors call the matching tether_*_free.
// - Handlers are std::function objects; the wrapper owns them and the C library frees
//   them (through userdata_free) when they are replaced or their owner is freed.
// - Errors are reported with exceptions: every failing call throws tether::error, which
//   carries the tether_result code and the library's message. Handlers run inside the
//   library's threads (or inside Runtime::dispatch): an exception escaping a handler is
//   caught at the boundary and reported on stderr, never propagated into C.
// - Strings are std::string_view; event arguments are JSON array text plus binary
//   attachments referenced by {"_placeholder":true,"num":N}, as in the C API.
//
// Threading is the C API's: see the tether_runtime comment in tether.h.
#ifndef TETHER_HPP
#define TETHER_HPP

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tether.h"

namespace tether {

/// A failed call: code() is the tether_result, what() the library's message.
class error : public std::runtime_error {
public:
    error(tether_result code, const std::string &msg)
        : std::runtime_error(std::string(tether_result_str(code)) + ": " + msg), code_(code) {}
    tether_result code() const noexcept { return code_; }

private:
    tether_result code_;
};

namespace detail {
inline std::string last_error() {
    char buf[1024];
    size_t n = 0;
    tether_last_error_message(buf, sizeof buf, &n);
    return std::string(buf, n);
}

inline void check(tether_result rc) {
    if (rc != TETHER_RESULT_OK) throw error(rc, last_error());
}

template <class F> void free_fn(void *p) { delete static_cast<F *>(p); }

template <class F, class... A> void call(void *ud, A &&...a) noexcept {
    try {
        (*static_cast<F *>(ud))(std::forward<A>(a)...);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "tether: exception in a handler: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "tether: unknown exception in a handler\n");
    }
}

inline std::string_view sv(tether_str s) { return std::string_view(s.data, s.len); }
} // namespace detail

/// One binary attachment (borrowed).
struct Bytes {
    const uint8_t *data = nullptr;
    size_t size = 0;
};

/// Event arguments, borrowed for the callback.
class ArgsView {
public:
    explicit ArgsView(const tether_sio_args &a) : a_(a) {}
    /// The JSON array text of the arguments.
    std::string_view json() const { return detail::sv(a_.json); }
    size_t bin_count() const { return a_.bins_len; }
    Bytes bin(size_t i) const { return i < a_.bins_len ? Bytes{a_.bins[i].data, a_.bins[i].len} : Bytes{}; }

private:
    tether_sio_args a_;
};

/// An acknowledgement handle of your own: answer once, from any thread.
class Ack {
public:
    Ack() = default;
    explicit Ack(tether_ack *a) : a_(a) {}
    Ack(Ack &&o) noexcept : a_(std::exchange(o.a_, nullptr)) {}
    Ack &operator=(Ack &&o) noexcept {
        if (this != &o) {
            tether_ack_free(a_);
            a_ = std::exchange(o.a_, nullptr);
        }
        return *this;
    }
    Ack(const Ack &) = delete;
    Ack &operator=(const Ack &) = delete;
    ~Ack() { tether_ack_free(a_); }
    explicit operator bool() const { return a_ != nullptr; }
    void send(std::string_view json = "[]", const std::vector<Bytes> &bins = {}) const;

private:
    tether_ack *a_ = nullptr;
};

namespace detail {
inline std::vector<tether_bytes> c_bins(const std::vector<Bytes> &bins) {
    std::vector<tether_bytes> v;
    v.reserve(bins.size());
    for (const auto &b : bins) v.push_back(tether_bytes{b.data, b.size});
    return v;
}
} // namespace detail

inline void Ack::send(std::string_view json, const std::vector<Bytes> &bins) const {
    auto b = detail::c_bins(bins);
    detail::check(tether_ack_send(a_, json.data(), json.size(), b.data(), b.size()));
}

/// An incoming event, borrowed for the callback.
class Event {
public:
    explicit Event(const tether_sio_event *e) : e_(e) {}
    std::string_view name() const { return detail::sv(e_->name); }
    ArgsView args() const { return ArgsView(e_->args); }
    std::string_view json() const { return detail::sv(e_->args.json); }
    bool wants_ack() const { return e_->ack != nullptr; }
    /// Answer the acknowledgement now.
    void ack(std::string_view json = "[]", const std::vector<Bytes> &bins = {}) const {
        if (!e_->ack) throw error(TETHER_RESULT_NULL_PARAMETER, "the event asked for no ack");
        auto b = detail::c_bins(bins);
        detail::check(tether_ack_send(e_->ack, json.data(), json.size(), b.data(), b.size()));
    }
    /// Keep the acknowledgement to answer later (any thread).
    Ack keep_ack() const { return Ack(tether_ack_clone(e_->ack)); }

private:
    const tether_sio_event *e_;
};

/// Where the callbacks run.
enum class Delivery : uint32_t {
    RuntimeThreads = TETHER_DELIVERY_RUNTIME_THREADS,
    HostPoll = TETHER_DELIVERY_HOST_POLL,
};

/// The runtime (worker threads, delivery, shutdown).
class Runtime {
public:
    explicit Runtime(uint32_t workers = 0, Delivery d = Delivery::RuntimeThreads,
                     bool single_threaded = false) {
        tether_runtime_options o{workers, static_cast<uint32_t>(d), single_threaded};
        detail::check(tether_runtime_new(&o, &rt_));
    }
    Runtime(Runtime &&o) noexcept : rt_(std::exchange(o.rt_, nullptr)) {}
    Runtime &operator=(Runtime &&o) noexcept {
        if (this != &o) {
            tether_runtime_free(rt_);
            rt_ = std::exchange(o.rt_, nullptr);
        }
        return *this;
    }
    Runtime(const Runtime &) = delete;
    Runtime &operator=(const Runtime &) = delete;
    /// Shuts down (5 s) if not done yet, then frees.
    ~Runtime() { tether_runtime_free(rt_); }

    /// Host poll: run queued callbacks here; returns how many ran.
    size_t dispatch(size_t max_events = 1024, uint32_t timeout_ms = 0) {
        size_t n = 0;
        detail::check(tether_runtime_dispatch(rt_, max_events, timeout_ms, &n));
        return n;
    }
    size_t pending() const { return tether_runtime_pending(rt_); }
    /// Close everything, deliver final events, join threads (throws on timeout).
    void shutdown(uint32_t timeout_ms = 5000) { detail::check(tether_runtime_shutdown(rt_, timeout_ms)); }
    tether_runtime *get() const { return rt_; }

private:
    tether_runtime *rt_ = nullptr;
};

/// A borrowed server socket (valid during the callback); clone() keeps it.
class SocketRef;

/// An owned server socket handle.
class Socket {
public:
    Socket() = default;
    explicit Socket(tether_sio_socket *s) : s_(s) {}
    Socket(Socket &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Socket &operator=(Socket &&o) noexcept {
        if (this != &o) {
            tether_sio_socket_free(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    Socket(const Socket &) = delete;
    Socket &operator=(const Socket &) = delete;
    ~Socket() { tether_sio_socket_free(s_); }
    SocketRef ref() const;
    tether_sio_socket *get() const { return s_; }

private:
    tether_sio_socket *s_ = nullptr;
};

class SocketRef {
public:
    explicit SocketRef(tether_sio_socket *s) : s_(s) {}
    std::string_view id() const { return detail::sv(tether_sio_socket_id(s_)); }
    std::string_view nsp() const { return detail::sv(tether_sio_socket_namespace(s_)); }
    std::string_view auth() const { return detail::sv(tether_sio_socket_auth(s_)); }
    bool connected() const { return tether_sio_socket_connected(s_); }
    void emit(const std::string &event, std::string_view json = "[]", const std::vector<Bytes> &bins = {}) const {
        auto b = detail::c_bins(bins);
        detail::check(tether_sio_socket_emit(s_, event.c_str(), json.data(), json.size(), b.data(), b.size()));
    }
    void join(const std::string &room) const { detail::check(tether_sio_socket_join(s_, room.c_str())); }
    void leave(const std::string &room) const { detail::check(tether_sio_socket_leave(s_, room.c_str())); }
    void disconnect() const { detail::check(tether_sio_socket_disconnect(s_)); }
    Socket clone() const { return Socket(tether_sio_socket_clone(s_)); }
    tether_sio_socket *get() const { return s_; }

private:
    tether_sio_socket *s_;
};

inline SocketRef Socket::ref() const { return SocketRef(s_); }

/// Who receives a server-side emit (see tether_sio_target).
struct Target {
    std::vector<std::string> rooms;
    std::vector<std::string> except;
    std::string except_socket;
    bool is_volatile = false;
};

/// Server options (zero/empty means the reference default).
struct ServerOptions {
    std::string path;
    uint32_t ping_interval_ms = 0;
    uint32_t ping_timeout_ms = 0;
    uint32_t connect_timeout_ms = 0;
    size_t max_payload = 0;
    std::vector<std::string> cors_origins;
    std::string tls_cert_file; ///< with tls_key_file: serve https:// and wss://
    std::string tls_key_file;
    std::string redis_url;     ///< join a cluster through Redis (key "socket.io")
};

/// A Socket.IO server.
class Server {
public:
    using EventFn = std::function<void(SocketRef, const Event &)>;
    using SocketFn = std::function<void(SocketRef)>;
    using DisconnectFn = std::function<void(SocketRef, std::string_view reason)>;

    explicit Server(Runtime &rt, const ServerOptions &o = {}) {
        tether_sio_server_config *c = nullptr;
        detail::check(tether_sio_server_config_new(&c));
        std::unique_ptr<tether_sio_server_config, void (*)(tether_sio_server_config *)> guard(
            c, tether_sio_server_config_free);
        if (!o.path.empty()) detail::check(tether_sio_server_config_set_path(c, o.path.c_str()));
        if (o.ping_interval_ms) detail::check(tether_sio_server_config_set_ping_interval(c, o.ping_interval_ms));
        if (o.ping_timeout_ms) detail::check(tether_sio_server_config_set_ping_timeout(c, o.ping_timeout_ms));
        if (o.connect_timeout_ms)
            detail::check(tether_sio_server_config_set_connect_timeout(c, o.connect_timeout_ms));
        if (o.max_payload) detail::check(tether_sio_server_config_set_max_payload(c, o.max_payload));
        for (const auto &origin : o.cors_origins)
            detail::check(tether_sio_server_config_add_cors_origin(c, origin.c_str()));
        if (!o.tls_cert_file.empty())
            detail::check(tether_sio_server_config_set_tls_files(c, o.tls_cert_file.c_str(), o.tls_key_file.c_str()));
        if (!o.redis_url.empty())
            detail::check(tether_sio_server_config_set_redis(c, o.redis_url.c_str(), nullptr, 0));
        detail::check(tether_sio_server_new(rt.get(), c, &s_));
    }
    Server(Server &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Server &operator=(Server &&o) noexcept {
        if (this != &o) {
            tether_sio_server_free(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    ~Server() { tether_sio_server_free(s_); }

    /// Listen; returns the bound port.
    uint16_t listen(const std::string &address) {
        uint16_t port = 0;
        detail::check(tether_sio_server_listen(s_, address.c_str(), &port));
        return port;
    }
    void route(const std::string &path, const std::string &content_type, std::string_view body) {
        detail::check(tether_sio_server_add_route(s_, path.c_str(), content_type.c_str(),
                                                  reinterpret_cast<const uint8_t *>(body.data()), body.size()));
    }
    void on(const std::string &event, EventFn fn, const std::string &nsp = "/") {
        auto *f = new EventFn(std::move(fn));
        detail::check(tether_sio_server_on(s_, nsp.c_str(), event.c_str(), &event_tramp, f, &detail::free_fn<EventFn>));
    }
    void on_any(EventFn fn, const std::string &nsp = "/") {
        auto *f = new EventFn(std::move(fn));
        detail::check(tether_sio_server_on_any(s_, nsp.c_str(), &event_tramp, f, &detail::free_fn<EventFn>));
    }
    void on_connection(SocketFn fn, const std::string &nsp = "/") {
        auto *f = new SocketFn(std::move(fn));
        detail::check(tether_sio_server_on_connection(s_, nsp.c_str(), &socket_tramp, f, &detail::free_fn<SocketFn>));
    }
    void on_disconnect(DisconnectFn fn, const std::string &nsp = "/") {
        auto *f = new DisconnectFn(std::move(fn));
        detail::check(tether_sio_server_on_disconnect(s_, nsp.c_str(), &disc_tramp, f, &detail::free_fn<DisconnectFn>));
    }
    void emit(const std::string &event, std::string_view json = "[]", const Target &t = {},
              const std::string &nsp = "/", const std::vector<Bytes> &bins = {}) {
        std::vector<const char *> rooms, except;
        for (const auto &r : t.rooms) rooms.push_back(r.c_str());
        for (const auto &r : t.except) except.push_back(r.c_str());
        tether_sio_target ct{rooms.data(), rooms.size(), except.data(), except.size(),
                             t.except_socket.empty() ? nullptr : t.except_socket.c_str(), t.is_volatile};
        auto b = detail::c_bins(bins);
        detail::check(tether_sio_server_emit(s_, nsp.c_str(), &ct, event.c_str(), json.data(), json.size(), b.data(),
                                             b.size()));
    }
    size_t socket_count(const std::string &nsp = "/") const { return tether_sio_server_socket_count(s_, nsp.c_str()); }
    void close() { detail::check(tether_sio_server_close(s_)); }
    tether_sio_server *get() const { return s_; }

private:
    static void event_tramp(void *ud, tether_sio_socket *s, const tether_sio_event *e) {
        detail::call<EventFn>(ud, SocketRef(s), Event(e));
    }
    static void socket_tramp(void *ud, tether_sio_socket *s) { detail::call<SocketFn>(ud, SocketRef(s)); }
    static void disc_tramp(void *ud, tether_sio_socket *s, tether_str r) {
        detail::call<DisconnectFn>(ud, SocketRef(s), detail::sv(r));
    }
    tether_sio_server *s_ = nullptr;
};

/// Client options (zero/empty means socket.io-client's default).
struct ClientOptions {
    uint32_t transports = 0; ///< TETHER_TRANSPORT_* bits
    std::string auth_json;
    std::vector<std::pair<std::string, std::string>> headers;
    bool reconnection = true;
    uint32_t reconnection_attempts = 0;
    uint32_t reconnection_delay_ms = 1000;
    uint32_t reconnection_delay_max_ms = 5000;
    uint32_t timeout_ms = 0;
    std::vector<std::string> ca_files;       ///< CA certificates to trust beside the Mozilla roots
    bool danger_accept_invalid_certs = false; ///< development only: no certificate checks
};

/// A borrowed client socket (valid during the callback).
class ClientSocketRef {
public:
    explicit ClientSocketRef(tether_sio_client_socket *s) : s_(s) {}
    bool connected() const { return tether_sio_client_socket_connected(s_); }
    std::string_view nsp() const { return detail::sv(tether_sio_client_socket_namespace(s_)); }
    void emit(const std::string &event, std::string_view json = "[]", const std::vector<Bytes> &bins = {}) const {
        auto b = detail::c_bins(bins);
        detail::check(tether_sio_client_socket_emit(s_, event.c_str(), json.data(), json.size(), b.data(), b.size()));
    }
    tether_sio_client_socket *get() const { return s_; }

protected:
    tether_sio_client_socket *s_;
};

/// An owned client socket (one namespace).
class ClientSocket : public ClientSocketRef {
public:
    using EventFn = std::function<void(ClientSocketRef, const Event &)>;
    using AckFn = std::function<void(tether_result, const ArgsView *reply)>;

    explicit ClientSocket(tether_sio_client_socket *s) : ClientSocketRef(s) {}
    ClientSocket(ClientSocket &&o) noexcept : ClientSocketRef(std::exchange(o.s_, nullptr)) {}
    ClientSocket &operator=(ClientSocket &&o) noexcept {
        if (this != &o) {
            tether_sio_client_socket_free(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    ClientSocket(const ClientSocket &) = delete;
    ClientSocket &operator=(const ClientSocket &) = delete;
    ~ClientSocket() { tether_sio_client_socket_free(s_); }

    void on(const std::string &event, EventFn fn) {
        auto *f = new EventFn(std::move(fn));
        detail::check(tether_sio_client_socket_on(s_, event.c_str(), &tramp, f, &detail::free_fn<EventFn>));
    }
    /// Connect; timeout 0 returns at once (the outcome arrives as a lifecycle event).
    void connect(uint32_t timeout_ms = 5000) { detail::check(tether_sio_client_socket_connect(s_, timeout_ms)); }
    void disconnect() { detail::check(tether_sio_client_socket_disconnect(s_)); }
    void emit_with_ack(const std::string &event, std::string_view json, uint32_t timeout_ms, AckFn fn,
                       const std::vector<Bytes> &bins = {}) {
        auto *f = new AckFn(std::move(fn));
        auto b = detail::c_bins(bins);
        tether_result rc = tether_sio_client_socket_emit_with_ack(s_, event.c_str(), json.data(), json.size(),
                                                                  b.data(), b.size(), timeout_ms, &ack_tramp, f);
        if (rc != TETHER_RESULT_OK) {
            delete f;
            detail::check(rc);
        }
    }

private:
    static void tramp(void *ud, tether_sio_client_socket *s, const tether_sio_event *e) {
        detail::call<EventFn>(ud, ClientSocketRef(s), Event(e));
    }
    static void ack_tramp(void *ud, tether_result st, const tether_sio_args *reply) {
        std::unique_ptr<AckFn> f(static_cast<AckFn *>(ud)); // runs exactly once
        if (reply) {
            ArgsView a(*reply);
            detail::call<AckFn>(f.get(), st, static_cast<const ArgsView *>(&a));
        } else {
            detail::call<AckFn>(f.get(), st, static_cast<const ArgsView *>(nullptr));
        }
    }
};

/// A Socket.IO client (one connection, several namespace sockets).
class Client {
public:
    using LifecycleFn = std::function<void(ClientSocketRef *socket, const tether_sio_client_event &)>;

    Client(Runtime &rt, const std::string &url, const ClientOptions &o = {}) {
        tether_sio_client_config *c = nullptr;
        detail::check(tether_sio_client_config_new(&c));
        std::unique_ptr<tether_sio_client_config, void (*)(tether_sio_client_config *)> guard(
            c, tether_sio_client_config_free);
        if (o.transports) detail::check(tether_sio_client_config_set_transports(c, o.transports));
        if (!o.auth_json.empty())
            detail::check(tether_sio_client_config_set_auth(c, o.auth_json.data(), o.auth_json.size()));
        for (const auto &h : o.headers)
            detail::check(tether_sio_client_config_add_header(c, h.first.c_str(), h.second.c_str()));
        detail::check(tether_sio_client_config_set_reconnection(c, o.reconnection, o.reconnection_attempts,
                                                                o.reconnection_delay_ms,
                                                                o.reconnection_delay_max_ms, 0.5));
        if (o.timeout_ms) detail::check(tether_sio_client_config_set_timeout(c, o.timeout_ms));
        for (const auto &f : o.ca_files) detail::check(tether_sio_client_config_add_ca_file(c, f.c_str()));
        if (o.danger_accept_invalid_certs)
            detail::check(tether_sio_client_config_danger_accept_invalid_certs(c, true));
        detail::check(tether_sio_client_new(rt.get(), url.c_str(), c, &c_));
    }
    Client(Client &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Client &operator=(Client &&o) noexcept {
        if (this != &o) {
            tether_sio_client_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;
    ~Client() { tether_sio_client_free(c_); }

    /// The socket of namespace `nsp` (empty: the URL's namespace).
    ClientSocket socket(const std::string &nsp = "") {
        tether_sio_client_socket *s = nullptr;
        detail::check(tether_sio_client_socket_new(c_, nsp.empty() ? nullptr : nsp.c_str(), &s));
        return ClientSocket(s);
    }
    void on_lifecycle(LifecycleFn fn) {
        auto *f = new LifecycleFn(std::move(fn));
        detail::check(tether_sio_client_on_lifecycle(c_, &tramp, f, &detail::free_fn<LifecycleFn>));
    }
    void close() { detail::check(tether_sio_client_close(c_)); }
    tether_sio_client *get() const { return c_; }

private:
    static void tramp(void *ud, tether_sio_client_socket *s, const tether_sio_client_event *e) {
        if (s) {
            ClientSocketRef r(s);
            detail::call<LifecycleFn>(ud, &r, *e);
        } else {
            detail::call<LifecycleFn>(ud, static_cast<ClientSocketRef *>(nullptr), *e);
        }
    }
    tether_sio_client *c_ = nullptr;
};

// ---------------------------------------------------------------------------------------
// Plain WebSocket

/// WebSocket options (zero/empty means the default; see tether_ws_config).
struct WsOptions {
    std::string path;                     ///< server: the endpoint's path ("/")
    std::vector<std::string> allowed_origins;
    std::vector<std::string> subprotocols;
    std::vector<std::pair<std::string, std::string>> headers;
    size_t max_message_size = 0;
    uint32_t keepalive_ms = 0;
    size_t send_queue = 0;                ///< with high_water
    size_t high_water = 0;
    std::string tls_cert_file;            ///< server: with tls_key_file, serve wss://
    std::string tls_key_file;
    std::vector<std::string> ca_files;    ///< client: CAs to trust beside the Mozilla roots
    bool danger_accept_invalid_certs = false; ///< client, development only
};

class WsConn;

/// A borrowed WebSocket connection (valid during the callback); clone() keeps it.
class WsConnRef {
public:
    explicit WsConnRef(tether_ws_conn *c) : c_(c) {}
    uint64_t id() const { return tether_ws_conn_id(c_); }
    std::string_view protocol() const { return detail::sv(tether_ws_conn_protocol(c_)); }
    bool is_open() const { return tether_ws_conn_is_open(c_); }
    size_t queued() const { return tether_ws_conn_queued(c_); }
    /// Throws tether::error (TETHER_RESULT_QUEUE_FULL, _NOT_CONNECTED, _INVALID_UTF8).
    void send_text(std::string_view text) const {
        detail::check(tether_ws_conn_send_text(c_, text.data(), text.size()));
    }
    void send_binary(const void *data, size_t len) const {
        detail::check(tether_ws_conn_send_binary(c_, static_cast<const uint8_t *>(data), len));
    }
    void close(uint16_t code = 1000, const std::string &reason = "") const {
        detail::check(tether_ws_conn_close(c_, code, reason.c_str()));
    }
    /// Server side: a header of the upgrade request ("" when missing).
    std::string request_header(const std::string &name) const {
        char buf[4096];
        size_t n = 0;
        detail::check(tether_ws_conn_request_header(c_, name.c_str(), buf, sizeof buf, &n));
        return std::string(buf, n);
    }
    WsConn clone() const;
    tether_ws_conn *get() const { return c_; }

protected:
    tether_ws_conn *c_;
};

/// An owned WebSocket connection handle (the connection stays open when it is released).
class WsConn : public WsConnRef {
public:
    WsConn() : WsConnRef(nullptr) {}
    explicit WsConn(tether_ws_conn *c) : WsConnRef(c) {}
    WsConn(WsConn &&o) noexcept : WsConnRef(std::exchange(o.c_, nullptr)) {}
    WsConn &operator=(WsConn &&o) noexcept {
        if (this != &o) {
            tether_ws_conn_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    WsConn(const WsConn &) = delete;
    WsConn &operator=(const WsConn &) = delete;
    ~WsConn() { tether_ws_conn_free(c_); }
    explicit operator bool() const { return c_ != nullptr; }
};

inline WsConn WsConnRef::clone() const { return WsConn(tether_ws_conn_clone(c_)); }

/// The handlers of a WebSocket server or client (any may be empty). They run as the
/// runtime's delivery says; per connection in order, on_open first, on_close last.
struct WsHandlers {
    std::function<void(WsConnRef)> on_open;
    std::function<void(WsConnRef, bool binary, std::string_view data)> on_message;
    std::function<void(WsConnRef, uint16_t code, std::string_view reason, bool by_peer)> on_close;
    std::function<void(WsConnRef, size_t queued)> on_high_water;
    std::function<void(tether_result, std::string_view message)> on_connect_error;
};

namespace detail {
inline std::unique_ptr<tether_ws_config, void (*)(tether_ws_config *)> ws_config(const WsOptions &o) {
    tether_ws_config *c = nullptr;
    check(tether_ws_config_new(&c));
    std::unique_ptr<tether_ws_config, void (*)(tether_ws_config *)> g(c, tether_ws_config_free);
    if (!o.path.empty()) check(tether_ws_config_set_path(c, o.path.c_str()));
    for (const auto &x : o.allowed_origins) check(tether_ws_config_add_allowed_origin(c, x.c_str()));
    for (const auto &x : o.subprotocols) check(tether_ws_config_add_subprotocol(c, x.c_str()));
    for (const auto &h : o.headers) check(tether_ws_config_add_header(c, h.first.c_str(), h.second.c_str()));
    if (o.max_message_size) check(tether_ws_config_set_max_message_size(c, o.max_message_size));
    if (o.keepalive_ms) check(tether_ws_config_set_keepalive(c, o.keepalive_ms));
    if (o.send_queue) check(tether_ws_config_set_send_queue(c, o.send_queue, o.high_water ? o.high_water : o.send_queue));
    if (!o.tls_cert_file.empty())
        check(tether_ws_config_set_tls_files(c, o.tls_cert_file.c_str(), o.tls_key_file.c_str()));
    for (const auto &f : o.ca_files) check(tether_ws_config_add_ca_file(c, f.c_str()));
    if (o.danger_accept_invalid_certs) check(tether_ws_config_danger_accept_invalid_certs(c, true));
    return g;
}

struct WsTramp {
    static WsHandlers &h(void *ud) { return *static_cast<WsHandlers *>(ud); }
    static void open(void *ud, tether_ws_conn *c) {
        if (h(ud).on_open) call<std::function<void(WsConnRef)>>(&h(ud).on_open, WsConnRef(c));
    }
    static void message(void *ud, tether_ws_conn *c, bool binary, const uint8_t *data, size_t len) {
        using F = std::function<void(WsConnRef, bool, std::string_view)>;
        std::string_view d(reinterpret_cast<const char *>(data), data ? len : 0);
        if (h(ud).on_message) call<F>(&h(ud).on_message, WsConnRef(c), binary, d);
    }
    static void close(void *ud, tether_ws_conn *c, uint16_t code, tether_str reason, bool by_peer) {
        using F = std::function<void(WsConnRef, uint16_t, std::string_view, bool)>;
        if (h(ud).on_close) call<F>(&h(ud).on_close, WsConnRef(c), code, sv(reason), by_peer);
    }
    static void high_water(void *ud, tether_ws_conn *c, size_t queued) {
        using F = std::function<void(WsConnRef, size_t)>;
        if (h(ud).on_high_water) call<F>(&h(ud).on_high_water, WsConnRef(c), queued);
    }
    static void connect_error(void *ud, tether_result st, tether_str msg) {
        using F = std::function<void(tether_result, std::string_view)>;
        if (h(ud).on_connect_error) call<F>(&h(ud).on_connect_error, st, sv(msg));
    }
    /// The C callbacks struct; the library owns `handlers` from here on.
    static tether_ws_callbacks make(WsHandlers handlers) {
        tether_ws_callbacks cb{};
        cb.on_open = &open;
        cb.on_message = &message;
        cb.on_close = &close;
        cb.on_high_water = &high_water;
        cb.on_connect_error = &connect_error;
        cb.userdata = new WsHandlers(std::move(handlers));
        cb.userdata_free = &free_fn<WsHandlers>;
        return cb;
    }
};
} // namespace detail

/// A plain WebSocket server.
class WsServer {
public:
    WsServer(Runtime &rt, WsHandlers handlers, const WsOptions &o = {}) {
        auto c = detail::ws_config(o);
        tether_ws_callbacks cb = detail::WsTramp::make(std::move(handlers));
        detail::check(tether_ws_server_new(rt.get(), c.get(), &cb, &s_));
    }
    WsServer(WsServer &&o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    WsServer &operator=(WsServer &&o) noexcept {
        if (this != &o) {
            tether_ws_server_free(s_);
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    WsServer(const WsServer &) = delete;
    WsServer &operator=(const WsServer &) = delete;
    ~WsServer() { tether_ws_server_free(s_); }
    /// Listen; returns the bound port.
    uint16_t listen(const std::string &address) {
        uint16_t port = 0;
        detail::check(tether_ws_server_listen(s_, address.c_str(), &port));
        return port;
    }
    size_t connection_count() const { return tether_ws_server_connection_count(s_); }
    void close() { detail::check(tether_ws_server_close(s_)); }
    tether_ws_server *get() const { return s_; }

private:
    tether_ws_server *s_ = nullptr;
};

/// A plain WebSocket client: each connect() opens one connection with the handlers.
class WsClient {
public:
    WsClient(Runtime &rt, WsHandlers handlers, const WsOptions &o = {}) {
        auto c = detail::ws_config(o);
        tether_ws_callbacks cb = detail::WsTramp::make(std::move(handlers));
        detail::check(tether_ws_client_new(rt.get(), c.get(), &cb, &c_));
    }
    WsClient(WsClient &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    WsClient &operator=(WsClient &&o) noexcept {
        if (this != &o) {
            tether_ws_client_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    WsClient(const WsClient &) = delete;
    WsClient &operator=(const WsClient &) = delete;
    ~WsClient() { tether_ws_client_free(c_); }
    /// Connect and wait (not from inside a handler); throws tether::error on failure.
    WsConn connect(const std::string &url, uint32_t timeout_ms = 5000) {
        tether_ws_conn *conn = nullptr;
        detail::check(tether_ws_client_connect(c_, url.c_str(), timeout_ms == 0 ? 1 : timeout_ms, &conn));
        return WsConn(conn);
    }
    /// Connect in the background: on_open or on_connect_error follows.
    void connect_async(const std::string &url) {
        detail::check(tether_ws_client_connect(c_, url.c_str(), 0, nullptr));
    }
    void close() { detail::check(tether_ws_client_close(c_)); }
    tether_ws_client *get() const { return c_; }

private:
    tether_ws_client *c_ = nullptr;
};

/// The library's version string ("tether/X.Y.Z").
inline std::string_view version() { return tether_version(); }

} // namespace tether

#endif // TETHER_HPP
