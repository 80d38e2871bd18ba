import { describe, expect, test } from 'bun:test';
import { eventMembers } from '../../src/delivery/delivery';
import { SignalError } from '../../src/errors';
import { PAYLOAD_JSON } from '../../src/sessions/payload-source';
import { ackFrame, BadFrame, errorFrame, eventFrame, parseClientFrame } from '../../src/ws/frames';

describe('server frames', () => {
  test('an event frame is the event with its id as its first field, one JSON object', () => {
    const members = eventMembers(JSON.stringify({ type: 'offer', payload: { sdp: 'v=0\r\n' }, senderId: 'a' }));
    const frame = eventFrame(12, members);
    expect(frame.startsWith('{"id":12,"type":"offer"')).toBe(true);
    expect(JSON.parse(frame)).toEqual({ id: 12, type: 'offer', payload: { sdp: 'v=0\r\n' }, senderId: 'a' });
  });

  test('acks echo the client id as JSON, numbers and strings alike', () => {
    expect(JSON.parse(ackFrame(7, 'sent'))).toEqual({ ack: 7, status: 200, message: 'Message sent' });
    expect(JSON.parse(ackFrame('a"b', 'queued'))).toEqual({ ack: 'a"b', status: 202, message: 'Message queued' });
    expect(JSON.parse(ackFrame(null, 'sent')).ack).toBeNull();
    expect(JSON.parse(errorFrame(3, new SignalError('queue_full', 'full', 1)))).toEqual({ ack: 3, status: 429, error: 'queue_full', message: 'full', retryAfter: 1 });
  });
});

describe('client frames', () => {
  test('the body of POST /message with an optional id; other fields pass through unread', () => {
    expect(parseClientFrame('{"type":"offer","payload":{"sdp":"x"},"target":"b","id":1}')).toEqual({
      type: 'offer',
      payload: { sdp: 'x' },
      target: 'b',
      id: 1,
      [PAYLOAD_JSON]: '{"sdp":"x"}',
    });
    expect(parseClientFrame('{"type":"hello","senderId":"mallory"}')).toMatchObject({ type: 'hello' });
  });

  test.each([
    ['{', 'invalid_json', null],
    ['"offer"', 'invalid_request', null],
    ['null', 'invalid_request', null],
    ['{"id":{},"type":"x"}', 'invalid_request', null],
    ['{"id":"k","type":""}', 'invalid_request', 'k'],
    ['{"id":2,"type":"x","target":7}', 'invalid_request', 2],
    [`{"id":2,"type":"${'x'.repeat(65)}"}`, 'invalid_request', 2],
    [`{"type":"x","payload":"${'x'.repeat(64 * 1024)}"}`, 'payload_too_large', null],
  ])('%#: refused with %s', (data, code, id) => {
    const frame = parseClientFrame(data);
    expect(frame).toBeInstanceOf(BadFrame);
    expect((frame as BadFrame).error.code as string).toBe(code as string);
    expect((frame as BadFrame).id).toBe(id);
  });
});
