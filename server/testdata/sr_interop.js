// An independent implementation of the Confluent wire format (kafkajs and
// @kafkajs/confluent-schema-registry, with avsc, protobufjs and ajv;
// kafkajs-snappy for the node's compressed batches) for
// TestRegistryInterop. Usage:
//   node sr_interop.js register REGISTRY
//   node sr_interop.js produce BROKER REGISTRY N
//   node sr_interop.js consume BROKER REGISTRY N   (prints one JSON line per record)
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs')
// The node's producer compresses with snappy, as franz-go does by default.
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')

const schemas = {
  avro: { type: SchemaType.AVRO, schema: JSON.stringify({ type: 'record', name: 'Order', namespace: 'shop', fields: [
    { name: 'id', type: 'long' }, { name: 'user', type: 'string' }, { name: 'amount', type: 'double' }] }) },
  proto: { type: SchemaType.PROTOBUF, schema: 'syntax = "proto3";\npackage shop;\nmessage Order {\n  int64 id = 1;\n  string user = 2;\n  double amount = 3;\n}\n' },
  json: { type: SchemaType.JSON, schema: JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object',
    properties: { id: { type: 'integer' }, user: { type: 'string' }, amount: { type: 'number' } }, required: ['id', 'user', 'amount'] }) },
}

async function main() {
  const [mode, a, b, n] = process.argv.slice(2)
  if (mode === 'register') {
    const registry = new SchemaRegistry({ host: a })
    const ids = {}
    for (const [f, s] of Object.entries(schemas)) {
      ids[f] = (await registry.register(s, { subject: `${f}-in-value` })).id
    }
    console.log(JSON.stringify(ids))
    return
  }
  const registry = new SchemaRegistry({ host: b })
  const kafka = new Kafka({ brokers: [a], clientId: 'interop', logLevel: logLevel.ERROR })
  if (mode === 'produce') {
    const producer = kafka.producer()
    await producer.connect()
    for (const f of Object.keys(schemas)) {
      const id = await registry.getLatestSchemaId(`${f}-in-value`)
      const messages = []
      for (let i = 0; i < Number(n); i++) {
        messages.push({ key: `u${i % 3}`, value: await registry.encode(id, { id: i, user: `u${i % 3}`, amount: i * 2 }) })
      }
      await producer.send({ topic: `${f}-in`, messages })
    }
    await producer.disconnect()
    return
  }
  if (mode === 'consume') {
    const want = Number(n) * Object.keys(schemas).length
    const consumer = kafka.consumer({ groupId: `interop-${Date.now()}` })
    await consumer.connect()
    for (const f of Object.keys(schemas)) {
      await consumer.subscribe({ topic: `${f}-out`, fromBeginning: true })
    }
    let got = 0
    await new Promise((resolve, reject) => {
      consumer.run({ eachMessage: async ({ topic, message }) => {
        try {
          const v = await registry.decode(message.value)
          console.log(JSON.stringify({ topic, id: String(v.id), user: v.user, amount: Number(v.amount) }))
        } catch (e) {
          console.log(JSON.stringify({ topic, error: String(e) }))
        }
        if (++got >= want) resolve()
      } }).catch(reject)
    })
    await consumer.disconnect()
    return
  }
  throw new Error(`unknown mode ${mode}`)
}

main().catch((e) => { console.error(e); process.exit(1) })
