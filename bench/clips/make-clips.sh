#!/bin/sh
# Generates the relay benchmark's clip with GStreamer 1.22 (Debian 12): 2 s of a moving test pattern at
# 1280x720, 30 frames a second, H.264 constrained baseline at 1.4 Mbit/s (with the RTP packetization it
# comes to about 1.5 Mbit/s and 180 packets a second, as a dashcam's 720p stream does), ONE keyframe at
# its first frame (the simulator makes its keyframe interval by looping the clip from it; 2 s at most).
# The device simulator's own clips (src/device/clips) are 250 kbit/s: topped up to 1.5 Mbit/s with
# padding they would send about 650 small packets a second, not the packets of a 1.5 Mbit/s stream.
#   apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
# Run: sh bench/clips/make-clips.sh (it writes beside itself)
set -eu
cd "$(dirname "$0")"
gst-launch-1.0 -q videotestsrc num-buffers=60 pattern=smpte horizontal-speed=4 \
  ! video/x-raw,width=1280,height=720,framerate=30/1,format=I420 \
  ! x264enc bitrate=1400 speed-preset=veryfast tune=zerolatency bframes=0 cabac=false aud=true byte-stream=true \
    threads=1 key-int-max=100000 option-string="scenecut=0" \
  ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
  ! filesink location=h264-720p-1500k.h264
