"""A WHIP publisher or WHEP player on aiortc, a WebRTC stack independent of the server's (werift) and of
browsers' (libwebrtc). It drives the HTTP exchange itself: POST the offer (aiortc gathers before it
offers, so the offer carries its candidates and nothing is trickled), apply the answer, DELETE at the end.

    /usr/bin/python3 aiortc_client.py publish|play URL [--codec vp8|h264] [--token T] [--audio]

It prints one JSON object a line on stdout: {"event": "created", "location": ..., "answer": ...} once
answered, then {"event": "frames", "count": N} for every 10 video frames a player decodes (or a publisher
sends). It ends, DELETEing its resource, when its stdin closes or says "stop".
"""

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from fractions import Fraction

import numpy
from av import VideoFrame
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender


def say(**event):
    print(json.dumps(event), flush=True)


class MovingBars(VideoStreamTrack):
    """320x240 at 30 fps: bars that move, so that every frame differs and an encoder keeps sending."""

    def __init__(self):
        super().__init__()
        self.sent = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        image = numpy.zeros((240, 320, 3), numpy.uint8)
        x = (self.sent * 4) % 320
        image[:, x : x + 40] = (255, 200, 0)
        image[:, :, 2] = (numpy.arange(320) % 256).astype(numpy.uint8)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base if time_base else Fraction(1, 90000)
        self.sent += 1
        if self.sent % 10 == 0:
            say(event="frames", count=self.sent)
        return frame


def http(method, url, body=None, content_type=None, token=None):
    request = urllib.request.Request(url, data=body.encode() if body is not None else None, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def prefer(transceiver, codec):
    codecs = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in codecs if c.mimeType.lower() == "video/" + codec]
    transceiver.setCodecPreferences(chosen + [c for c in codecs if c.mimeType.lower() == "video/rtx"])


async def run(args):
    pc = RTCPeerConnection()
    decoded = 0
    if args.mode == "publish":
        prefer(pc.addTransceiver(MovingBars(), direction="sendonly"), args.codec)
        if args.audio:
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    else:
        prefer(pc.addTransceiver("video", direction="recvonly"), args.codec)
        if args.audio:
            pc.addTransceiver("audio", direction="recvonly")

        @pc.on("track")
        def on_track(track):
            async def read():
                nonlocal decoded
                while True:
                    try:
                        await track.recv()
                    except Exception:
                        return
                    if track.kind != "video":
                        continue
                    decoded += 1
                    if decoded % 10 == 0:
                        say(event="frames", count=decoded)

            asyncio.ensure_future(read())

    @pc.on("connectionstatechange")
    def on_state():
        say(event="state", state=pc.connectionState)

    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = http("POST", args.url, pc.localDescription.sdp, "application/sdp", args.token)
    if status != 201:
        say(event="refused", status=status, body=body)
        await pc.close()
        return 1
    location = headers.get("Location") or headers.get("location")
    say(event="created", location=location, answer=body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line or line.strip() == b"stop":
            break
    await pc.close()
    base = args.url.split("/whip/")[0].split("/whep/")[0]
    status, _, _ = http("DELETE", base + location, token=args.token)
    say(event="deleted", status=status)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "play"])
    parser.add_argument("url")
    parser.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    parser.add_argument("--token")
    parser.add_argument("--audio", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
