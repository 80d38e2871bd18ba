import { memoryUsage } from 'bun:jsc';
import { describe, expect, test } from 'bun:test';
import { iceCandidate, sdpOffer } from '../../bench/signal-payloads';
import { eventJson } from '../../src/delivery/delivery';
import { eventSize } from '../../src/delivery/rules';
import { batchPayloadSources, PAYLOAD_JSON, payloadSource } from '../../src/sessions/payload-source';
import { clientEvent } from '../../src/sessions/rules';

/** What JSON.parse makes of the body's payload, and what the scan found, parsed: they must be the same value. */
function agrees(body: string): void {
  const source = payloadSource(body);
  const parsed = (JSON.parse(body) as { payload?: unknown }).payload;
  if (source === undefined) return;
  expect(JSON.parse(source)).toEqual(parsed);
}

describe('payloadSource', () => {
  test.each([
    ['an object with a 4 KB SDP', JSON.stringify({ type: 'offer', target: 'b', payload: sdpOffer(1) }), JSON.stringify(sdpOffer(1))],
    ['a candidate', JSON.stringify({ type: 'ice-candidate', payload: iceCandidate(2), target: 'b' }), JSON.stringify(iceCandidate(2))],
    ['a string with quotes and backslashes', '{"type":"x","payload":"a\\"b\\\\","target":"b"}', '"a\\"b\\\\"'],
    ['a string that ends in an escaped backslash', '{"payload":"\\\\\\\\","type":"x"}', '"\\\\\\\\"'],
    ['nested arrays with brackets in strings', '{"type":"x","payload":[1,["]",{"}":"{"}],null]}', '[1,["]",{"}":"{"}],null]'],
    ['a number', '{"type":"x","payload":-1.5e3}', '-1.5e3'],
    ['a literal before the closing brace', '{"type":"x","payload":true}', 'true'],
    ['null', '{"payload":null,"type":"x"}', 'null'],
    ['whitespace and line breaks around it, kept inside it', '{ "type" : "x" ,\n "payload" :\r\n { "a" : [ 1 , 2 ] }\n }', '{ "a" : [ 1 , 2 ] }'],
    ['the last of repeated keys, as JSON.parse takes', '{"payload":1,"type":"x","payload":{"b":2}}', '{"b":2}'],
    ['a key that only contains the word', '{"type":"x","payloads":1,"payload":2}', '2'],
  ])('%s: the text as sent', (_, body, expected) => {
    expect(payloadSource(body)).toBe(expected);
    agrees(body);
  });

  test.each([
    ['no payload', '{"type":"x","target":"b"}'],
    ['an escaped key: the caller serialises the parsed value', '{"type":"x","p\\u0061yload":{"a":1}}'],
    ['an array body', '[{"type":"x","payload":1}]'],
    ['a string body', '"payload"'],
    ['an empty object', '{}'],
    ['a payload whose text holds a line break, which no event may carry', '{"type":"x","payload":{\n"a":1}}'],
    ['a payload whose text holds a carriage return', '{"type":"x","payload":[1,\r2]}'],
  ])('%s: undefined', (_, body) => {
    expect(payloadSource(body)).toBeUndefined();
  });

  test('agrees with JSON.parse on generated bodies', () => {
    const values: unknown[] = [0, -2.5, 'plain', 'q"uo\\te\n\u2028', '}]{[', [], {}, [1, [2, [3]]], { a: { b: ['c', { d: null }] } }, true, false, null];
    let n = 0;
    for (const payload of values) {
      for (const order of [0, 1, 2]) {
        const fields: [string, unknown][] = [
          ['type', 't'],
          ['target', 'b'],
        ];
        fields.splice(order, 0, ['payload', payload]);
        for (const space of ['', ' ', '\n\t ']) {
          const body = `{${space}${fields.map(([k, v]) => `"${k}"${space}:${space}${JSON.stringify(v, null, space ? 1 : undefined)}`).join(`${space},${space}`)}${space}}`;
          const text = JSON.stringify(payload, null, space ? 1 : undefined);
          // Pretty-printed, an object or array has line breaks in it: serialised again, not kept.
          if (text.includes('\n')) expect(payloadSource(body)).toBeUndefined();
          else expect(payloadSource(body)).toBe(text);
          agrees(body);
          n++;
        }
      }
    }
    expect(n).toBe(values.length * 9);
  });
});

describe('clientEvent', () => {
  test('with the payload text it is the same event as the parsed message serialised', () => {
    for (const payload of [sdpOffer(3), iceCandidate(4), 'text', 7, null, [1, '2']]) {
      const text = JSON.stringify({ type: 'offer', target: 'b', payload });
      const body = JSON.parse(text) as { type: string; payload: unknown };
      const plain = clientEvent('a', body);
      const sourced = clientEvent('a', { ...body, [PAYLOAD_JSON]: payloadSource(text) });
      expect(sourced.members).toBe(plain.members);
      expect(JSON.parse(eventJson(sourced.members))).toEqual({ type: 'offer', payload, senderId: 'a' });
    }
  });

  test('counted by its parts, it weighs what its whole text weighs, in UTF-8 bytes', () => {
    for (const payload of [sdpOffer(3), { note: 'ü€😀 and \u2028' }, 'é', 0]) {
      for (const [type, sender] of [
        ['offer', 'a'],
        ['tÿpe', 'pëer'],
      ] as const) {
        const text = JSON.stringify({ type, payload });
        const event = clientEvent(sender, { ...(JSON.parse(text) as { type: string }), [PAYLOAD_JSON]: payloadSource(text) });
        expect(event.size).toBe(eventSize(event.members));
        expect(event.size).toBe(Buffer.byteLength(JSON.stringify({ type, payload, senderId: sender })));
      }
    }
  });

  test('a type that needs escaping is escaped; no payload, no payload field', () => {
    expect(JSON.parse(eventJson(clientEvent('a', { type: 'x"}', [PAYLOAD_JSON]: '1' }).members))).toEqual({ type: 'x"}', payload: 1, senderId: 'a' });
    expect(clientEvent('a', { type: 'x' }).members).toBe('"type":"x","senderId":"a"}');
  });
});

describe('batchPayloadSources', () => {
  test('each message of a batch: its payload as sent, in order, whitespace and all', () => {
    const batch = [
      { type: 'offer', target: 'b', payload: { sdp: 'v=0' } },
      { type: 'ice-candidate', payload: { candidate: 'c', sdpMid: '0' }, target: 'b' },
      { type: 'hello' },
      { type: 'x', payload: '],"payload":{' },
    ];
    const text = ` [ ${batch.map((m) => JSON.stringify(m)).join(' ,\n ')} ] `;
    expect(batchPayloadSources(text)).toEqual(['{"sdp":"v=0"}', '{"candidate":"c","sdpMid":"0"}', undefined, '"],\\"payload\\":{"']);
    const sources = batchPayloadSources(text) ?? [];
    batch.forEach((m, i) => {
      const source = sources[i];
      if (source !== undefined) expect(JSON.parse(source)).toEqual(m.payload);
    });
  });

  test('a payload that is not most of the text it came in is not kept as a cut of it: it would keep all of that text alive', () => {
    // In a batch with an offer, the offer is kept; a candidate beside it is serialised again.
    const text = JSON.stringify([
      { type: 'offer', target: 'b', payload: sdpOffer(1) },
      { type: 'ice-candidate', target: 'b', payload: iceCandidate(2) },
    ]);
    expect(batchPayloadSources(text)).toEqual([JSON.stringify(sdpOffer(1)), undefined]);
    // A small payload in a body padded with whitespace, which JSON allows.
    expect(payloadSource(`{"type":"x","payload":{"n":1}${' '.repeat(1000)}}`)).toBeUndefined();
    expect(payloadSource(`{"type":"x","payload":{"n":1}${' '.repeat(100)}}`)).toBe('{"n":1}');
  });

  test('events of small payloads sent in large texts hold what they are counted, not the texts', () => {
    Bun.gc(true);
    const before = memoryUsage().current;
    const events = Array.from({ length: 500 }, (_, i) => {
      const text = `{"type":"x","target":"b","payload":{"n":${i}}${' '.repeat(60_000)}}`;
      return clientEvent('a', { ...(JSON.parse(text) as { type: string }), [PAYLOAD_JSON]: payloadSource(text) });
    });
    Bun.gc(true);
    const held = memoryUsage().current - before;
    // Each text was 60 KB: 30 MB in all, were the events cuts of them.
    expect(held).toBeLessThan(15_000_000);
    expect(events.reduce((n, e) => n + e.size, 0)).toBeLessThan(500 * 60);
  });
});

describe('batchPayloadSources, shapes', () => {
  test.each([
    ['an object body', '{"type":"x","payload":1}', undefined],
    ['an empty batch', '[]', []],
    ['items that are not objects', '[1,"payload",[{"payload":2}],{"payload":3}]', [undefined, undefined, undefined, '3']],
  ])('%s', (_, body, expected) => {
    expect(batchPayloadSources(body)).toEqual(expected);
  });
});
