// Node 20 lacks Promise.withResolvers (it arrived in Node 22). Some transitive
// dependencies of js-libp2p 2.x (mortice -> it-queue, used by the peer store)
// call it. The paths dial.mjs exercises did not reach those calls on Node 20.20,
// but install the standard polyfill anyway, before anything else is loaded.
// Import this module first: ES module imports are evaluated in order.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
