import { expect, test } from 'bun:test';
import { eventFrame, idFrame, retryFrame } from '../../src/sse/frame';

test('an event is an id line and one data line', () => {
  expect(eventFrame(7, '{"type":"offer"}')).toBe('id: 7\ndata: {"type":"offer"}\n\n');
});

test('data with line breaks becomes several data lines, never a forged field', () => {
  expect(eventFrame(1, 'a\nid: 99\r\nevent: x\rb')).toBe('id: 1\ndata: a\ndata: id: 99\ndata: event: x\ndata: b\n\n');
});

test('retry and bare id blocks carry no data', () => {
  expect(retryFrame(1000)).toBe('retry: 1000\n\n');
  expect(idFrame(0)).toBe('id: 0\n\n');
});
