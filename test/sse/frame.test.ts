import { expect, test } from 'bun:test';
import { eventFrame, idFrame, retryFrame } from '../../src/sse/frame';

test('an event is an id line and one data line: its object, opened in front of its members', () => {
  expect(eventFrame(7, '"type":"offer"}')).toBe('id: 7\ndata: {"type":"offer"}\n\n');
});

test('retry and bare id blocks carry no data', () => {
  expect(retryFrame(1000)).toBe('retry: 1000\n\n');
  expect(idFrame(0)).toBe('id: 0\n\n');
});
