// Strict shape checks, as the old programs did: every listed field has the right type and
// no other field is present.
'use strict'

const isString = (x) => typeof x === 'string'
const isNumber = (x) => typeof x === 'number'
const anything = () => true
const equals = (v) => (x) => x === v
const optional = (f) => (x) => x === undefined || f(x)

function matches (obj, spec) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return false
  for (const k of Object.keys(obj)) if (!(k in spec)) return false
  for (const [k, f] of Object.entries(spec)) if (!f(obj[k])) return false
  return true
}

function randomLetters (n) {
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
  let s = ''
  for (let i = 0; i < n; i++) s += letters.charAt(Math.floor(Math.random() * letters.length))
  return s
}

module.exports = { isString, isNumber, anything, equals, optional, matches, randomLetters }
