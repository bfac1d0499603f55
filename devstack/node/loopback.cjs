'use strict';
// Preloaded by devstack (`node --require ./loopback.cjs main.js`): kinesis-mock binds every interface
// ("0.0.0.0" is built in, no setting changes it), so a listen() that names only a port is given the host
// in DEVSTACK_BIND_HOST (default 127.0.0.1) and the mock stays on loopback.
const net = require('node:net');

const bindHost = process.env.DEVSTACK_BIND_HOST || '127.0.0.1';
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnBindHost(...args) {
  const [first, second] = args;
  if (typeof first === 'number' && (args.length === 1 || typeof second === 'function')) {
    args.splice(1, 0, bindHost);
  } else if (first !== null && typeof first === 'object' && first.path === undefined && first.host === undefined) {
    args[0] = { ...first, host: bindHost };
  }
  return originalListen.apply(this, args);
};
