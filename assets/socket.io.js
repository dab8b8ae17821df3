/*!
 * socket.io.js: a small Socket.IO client written for tether's examples (MIT).
 *
 * This is NOT the official client. It is a compact, dependency-free browser script, so the
 * tether examples work offline with no build step and no third-party bundle. It speaks
 * Socket.IO v5 over Engine.IO v4 on the WebSocket transport only. The official
 * `socket.io-client` (npm or CDN) works with tether too, so use it when you need more.
 *
 * Exposes a global `io(url?, opts?)` that returns a socket:
 *   socket.on/off/once(event, fn)          listeners ("connect", "connect_error", "disconnect" too)
 *   socket.emit(event, ...args[, ackFn])   ackFn is called with the server's ack arguments
 *   socket.emitWithAck(event, ...args)     Promise of the ack's first argument
 *   socket.id, socket.connected, socket.active, socket.connect(), socket.disconnect()
 * `url` defaults to the page's origin; its path picks the namespace (io("/admin")).
 * Options: path ("/socket.io/"), auth (object, or function(cb)), query (object),
 * autoConnect (true), reconnection (true), reconnectionAttempts (Infinity),
 * reconnectionDelay (1000), reconnectionDelayMax (5000), randomizationFactor (0.5), timeout (20000).
 *
 * Not supported: binary attachments (emit throws on ArrayBuffer/Blob/typed arrays, received
 * binary events are dropped with a warning), HTTP long-polling, several namespaces sharing one
 * connection (each io() call opens its own WebSocket), socket.timeout(), onAny, volatile,
 * connection state recovery and the Manager (socket.io) object.
 */
(function (global) {
  "use strict";

  const RESERVED = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];
  // Socket.IO packet types.
  const CONNECT = 0, DISCONNECT = 1, EVENT = 2, ACK = 3, CONNECT_ERROR = 4, BINARY_EVENT = 5, BINARY_ACK = 6;

  function isBinary(value, depth) {
    if (value === null || typeof value !== "object" || depth > 32) return false;
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return true;
    if (typeof Blob !== "undefined" && value instanceof Blob) return true;
    if (typeof value.toJSON === "function") return false;
    return Object.keys(value).some((k) => isBinary(value[k], depth + 1));
  }

  /** Parses `url` the way the official client does; returns the WebSocket base and namespace. */
  function parseUrl(url) {
    const loc = global.location || { protocol: "http:", host: "localhost", href: "http://localhost/" };
    if (url === undefined || url === null) url = loc.protocol + "//" + loc.host;
    else if (url.startsWith("//")) url = loc.protocol + url;
    else if (url.startsWith("/")) url = loc.protocol + "//" + loc.host + url;
    else if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) url = (loc.protocol === "https:" ? "https://" : "http://") + url;
    const u = new URL(url);
    const scheme = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    return { origin: scheme + "//" + u.host, nsp: u.pathname || "/", search: u.searchParams };
  }

  class Socket {
    constructor(url, opts) {
      const o = Object.assign({
        path: "/socket.io/", autoConnect: true, reconnection: true, reconnectionAttempts: Infinity,
        reconnectionDelay: 1000, reconnectionDelayMax: 5000, randomizationFactor: 0.5, timeout: 20000,
      }, opts);
      const { origin, nsp, search } = parseUrl(url);
      const query = new URLSearchParams(search);
      for (const [k, v] of Object.entries(o.query || {})) query.set(k, String(v));
      query.set("EIO", "4");
      query.set("transport", "websocket");
      this.opts = o;
      this.nsp = nsp;
      this.auth = o.auth;
      this.url = origin + o.path.replace(/\/$/, "") + "/?" + query.toString();
      this.id = undefined;
      this.connected = false;
      this.active = false; // true while connected or trying to (re)connect
      this._listeners = new Map();
      this._acks = new Map();
      this._nextAckId = 0;
      this._buffer = []; // packets emitted while disconnected, sent on connect
      this._attempts = 0;
      this._ws = null;
      this._timer = null; // connect timeout, ping timeout or reconnect delay
      if (o.autoConnect) this.connect();
    }

    get disconnected() { return !this.connected; }

    // ---- listeners ----
    on(ev, fn) {
      if (!this._listeners.has(ev)) this._listeners.set(ev, []);
      this._listeners.get(ev).push(fn);
      return this;
    }
    once(ev, fn) {
      const wrapper = (...args) => { this.off(ev, wrapper); fn.apply(this, args); };
      wrapper.fn = fn;
      return this.on(ev, wrapper);
    }
    off(ev, fn) {
      if (ev === undefined) this._listeners.clear();
      else if (fn === undefined) this._listeners.delete(ev);
      else {
        const list = (this._listeners.get(ev) || []).filter((l) => l !== fn && l.fn !== fn);
        list.length ? this._listeners.set(ev, list) : this._listeners.delete(ev);
      }
      return this;
    }
    listeners(ev) { return (this._listeners.get(ev) || []).slice(); }
    _fire(ev, ...args) {
      for (const fn of this.listeners(ev)) {
        try { fn.apply(this, args); } catch (err) { setTimeout(() => { throw err; }); }
      }
    }

    // ---- sending ----
    emit(ev, ...args) {
      if (RESERVED.includes(ev)) throw new Error('"' + ev + '" is a reserved event name');
      if (isBinary(args, 0)) {
        throw new Error("socket.io.js (tether): binary payloads are not supported by this small " +
          "client; send text/JSON, or use the official socket.io-client");
      }
      let id = "";
      if (typeof args[args.length - 1] === "function") {
        id = this._nextAckId++;
        this._acks.set(id, args.pop());
      }
      this._packet(EVENT, id + JSON.stringify([ev, ...args]));
      return this;
    }
    emitWithAck(ev, ...args) {
      return new Promise((resolve) => this.emit(ev, ...args, resolve));
    }
    send(...args) { return this.emit("message", ...args); }

    _packet(type, body) {
      const data = "4" + type + (this.nsp !== "/" ? this.nsp + "," : "") + body;
      if (this.connected) this._ws.send(data);
      else this._buffer.push(data);
    }

    // ---- connection lifecycle ----
    connect() {
      if (this.connected || this._ws) return this;
      this.active = true;
      clearTimeout(this._timer);
      const ws = this._ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      ws.onmessage = (e) => this._onEngine(e.data);
      ws.onclose = () => this._onClose("transport close");
      ws.onerror = () => {}; // always followed by onclose
      this._arm(this.opts.timeout, "timeout");
      return this;
    }
    open() { return this.connect(); }

    disconnect() {
      if (this.connected) this._ws.send("41" + (this.nsp !== "/" ? this.nsp + "," : ""));
      this._onClose("io client disconnect");
      return this;
    }
    close() { return this.disconnect(); }

    /** (Re)starts the single timer; on expiry the connection is dropped with `reason`. */
    _arm(ms, reason) {
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._onClose(reason), ms);
    }

    _sendConnect() {
      const send = (auth) => {
        this._ws.send("40" + (this.nsp !== "/" ? this.nsp + "," : "") + (auth ? JSON.stringify(auth) : ""));
      };
      if (typeof this.auth === "function") this.auth(send);
      else send(this.auth);
    }

    _onEngine(data) {
      if (typeof data !== "string") return console.warn("socket.io.js: binary frame ignored");
      const type = data[0];
      if (type === "0") { // open: {sid, upgrades, pingInterval, pingTimeout, maxPayload}
        const hs = JSON.parse(data.slice(1));
        this._ping = hs.pingInterval + hs.pingTimeout;
        this._arm(this._ping, "ping timeout");
        this._sendConnect();
      } else if (type === "2") { // ping -> pong
        this._ws.send("3" + data.slice(1));
        this._arm(this._ping, "ping timeout");
      } else if (type === "1") { // close
        this._onClose("transport close");
      } else if (type === "4") {
        this._onPacket(data.slice(1));
      }
    }

    _onPacket(str) {
      const type = Number(str[0]);
      let i = 1;
      if (type === BINARY_EVENT || type === BINARY_ACK) {
        return console.warn("socket.io.js: binary packet dropped (binary attachments are not supported)");
      }
      let nsp = "/";
      if (str[i] === "/") {
        const comma = str.indexOf(",", i);
        nsp = comma < 0 ? str.slice(i) : str.slice(i, comma);
        i = comma < 0 ? str.length : comma + 1;
      }
      if (nsp !== this.nsp) return;
      const start = i;
      while (i < str.length && str[i] >= "0" && str[i] <= "9") i++;
      const id = i > start ? Number(str.slice(start, i)) : undefined;
      const payload = i < str.length ? JSON.parse(str.slice(i)) : undefined;

      if (type === CONNECT) {
        this.id = payload && payload.sid;
        this.connected = true;
        this._attempts = 0;
        const buffered = this._buffer.splice(0);
        for (const data of buffered) this._ws.send(data);
        this._fire("connect");
      } else if (type === CONNECT_ERROR) {
        const err = new Error((payload && payload.message) || String(payload));
        err.data = payload && payload.data;
        this._onClose(null); // like the official client: no retry until connect() is called
        this._fire("connect_error", err);
      } else if (type === EVENT && Array.isArray(payload)) {
        const args = payload.slice(1);
        if (id !== undefined) {
          let sent = false;
          args.push((...reply) => {
            if (sent || !this.connected) return;
            sent = true;
            this._packet(ACK, id + JSON.stringify(reply));
          });
        }
        this._fire(payload[0], ...args);
      } else if (type === ACK && this._acks.has(id)) {
        const fn = this._acks.get(id);
        this._acks.delete(id);
        fn.apply(this, Array.isArray(payload) ? payload : []);
      } else if (type === DISCONNECT) {
        this._onClose("io server disconnect");
      }
    }

    /**
     * Tears the connection down. `reason` is the disconnect reason; it decides whether we
     * reconnect ("transport close", "ping timeout", "timeout") or stay down (client/server
     * disconnect, or null after a CONNECT_ERROR).
     */
    _onClose(reason) {
      clearTimeout(this._timer);
      const ws = this._ws;
      this._ws = null;
      if (ws) {
        ws.onmessage = ws.onclose = ws.onerror = null;
        if (ws.readyState <= 1) ws.close();
      }
      const wasConnected = this.connected;
      this.connected = false;
      this.id = undefined;
      const retry = reason !== null && reason !== "io client disconnect" && reason !== "io server disconnect";
      this.active = retry && this.opts.reconnection;
      if (wasConnected) {
        this._acks.clear();
        this._fire("disconnect", reason);
      } else if (retry && ws) {
        const err = new Error(reason === "timeout" ? "timeout" : "websocket error");
        this._fire("connect_error", err);
      }
      if (this.active && !this._ws) this._scheduleReconnect();
    }

    _scheduleReconnect() {
      const o = this.opts;
      if (this._attempts >= o.reconnectionAttempts) { this.active = false; return; }
      const base = Math.min(o.reconnectionDelay * Math.pow(2, this._attempts++), o.reconnectionDelayMax);
      const jitter = 1 + (Math.random() * 2 - 1) * o.randomizationFactor;
      const delay = Math.min(base * jitter, o.reconnectionDelayMax);
      clearTimeout(this._timer);
      this._timer = setTimeout(() => { if (this.active && !this._ws) this.connect(); }, delay);
    }
  }

  function io(url, opts) {
    if (typeof url === "object" && url !== null) { opts = url; url = undefined; }
    return new Socket(url, opts);
  }
  io.Socket = Socket;
  io.protocol = 5;
  global.io = io;
})(typeof self !== "undefined" ? self : this);
