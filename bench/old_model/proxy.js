// A model of the old proxy's relay path (Express + express.json() + ws, one event loop):
// POST /r/{name} gets a 10-letter request id, goes to the daemon's socket, and waits on a
// per-resource table to which every reply is offered (issue #3: "the old proxy offered
// every reply to every waiter"); the reply's inner response is sent as is. Where the old
// programs' cost is not documented, the model leaves the work out (no cancel message to
// the daemon, no second id per waiter), so that it errs on the fast side.
// Used only by bench/proxy_relay.py (--daemons old-model, --against old-model).
'use strict'
const http = require('http')
const express = require('express')
const { WebSocketServer } = require('ws')
const { isString, isNumber, anything, equals, optional, matches, randomLetters } = require('./check')

const secret = process.env.PROXY_SECRET
if (!secret) throw Error('Environment variable not set: PROXY_SECRET')

const clientRequest = {
  type: equals('requestFromClient'), resourceName: isString, zone: isString,
  request: anything, timeoutMsec: isNumber, requestId: optional(isString)
}
const initialize = { type: equals('initialize'), resourceName: isString, zone: isString, proxySecret: isString }
const reply = { type: equals('responseToClient'), requestId: optional(isString), response: anything, error: optional(isString) }
const ping = { type: equals('ping') }

const resources = {} // name -> {zone, send, waiters: {id: callback}}

function waitForReply (resource, requestId, timeoutMsec) {
  return new Promise((resolve) => {
    const done = (value) => { delete resource.waiters[requestId]; clearTimeout(timer); resolve(value) }
    resource.waiters[requestId] = (msg) => { if (msg.requestId === requestId) done(msg) }
    const timer = setTimeout(() => done(undefined), timeoutMsec)
  })
}

const app = express()
app.use(express.json())
app.get('/probe', (req, res) => res.send('running.'))
app.post('/r/:name', (req, res) => {
  (async () => {
    const request = req.body
    if (!matches(request, clientRequest) || request.requestId) {
      res.status(400).send({ message: 'invalid request' })
      return
    }
    const resource = resources[req.params.name]
    if (!resource) {
      res.status(404).send({ message: `resource not found: ${req.params.name}` })
      return
    }
    if (request.resourceName !== req.params.name) {
      res.status(500).send({ message: `Resource name mismatch: ${request.resourceName} <> ${req.params.name}` })
      return
    }
    if (request.zone !== resource.zone) {
      res.status(500).send({ message: `Zone mismatch: ${request.zone} <> ${resource.zone}` })
      return
    }
    request.requestId = randomLetters(10)
    resource.send(JSON.stringify(request))
    const msg = await waitForReply(resource, request.requestId, request.timeoutMsec)
    if (!msg) {
      res.status(504).send({ message: 'timeout waiting for response' })
      return
    }
    res.send(msg.error ? {} : msg.response)
  })().catch((err) => res.status(500).send({ message: err.message }))
})

const server = http.createServer(app)
const wss = new WebSocketServer({ server })
wss.on('connection', (ws) => {
  let name = ''
  let resource
  ws.on('message', (data) => {
    let msg
    try { msg = JSON.parse(data.toString()) } catch (err) { ws.close(); return }
    if (matches(msg, initialize)) {
      if (resource || msg.proxySecret !== secret || resources[msg.resourceName]) { ws.close(); return }
      name = msg.resourceName
      resource = { zone: msg.zone, send: (text) => ws.send(text), waiters: {} }
      resources[name] = resource
      ws.send(JSON.stringify({ type: 'acknowledge' }))
      return
    }
    if (!resource) { ws.close(); return }
    if (matches(msg, reply)) {
      if (!msg.requestId) { ws.close(); return }
      for (const id in resource.waiters) resource.waiters[id](msg)
    } else if (!matches(msg, ping)) {
      ws.close()
    }
  })
  ws.on('close', () => { if (resource && resources[name] === resource) delete resources[name] })
})

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`)
})
