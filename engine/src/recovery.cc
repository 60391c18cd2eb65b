#include "recovery.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "ipc/file_header.h"
#include "ipc/filesystem.h"
#include "record_codec.h"

namespace sluice {

using namespace format;

namespace {

// What one frame looks like to a validating walk.
enum class FrameCheck : uint8_t { kValid, kBadWord, kBadOffset, kBadRecords };

struct FrameVerdict {
  FrameCheck check = FrameCheck::kValid;
  std::string what;
};

// Validates the COMMITTED (or PREPARED) frame at `pos` whose first offset should be
// `expected_offset`: chaining, every record's bounds and checksum.
FrameVerdict check_committed_frame(const Segment& seg, uint32_t pos, uint64_t word, uint64_t expected_offset) {
  const FrameHeader* f = seg.frame(pos);
  if (f->base_offset != expected_offset)
    return {FrameCheck::kBadOffset, "frame holds offset " + std::to_string(f->base_offset) + ", expected " +
                                        std::to_string(expected_offset)};
  const uint64_t seed = frame_seed(f);
  const uint32_t end = pos + claim_length(word);
  uint32_t rec = pos + kFrameHeaderBytes;
  for (uint32_t i = 0; i < claim_count(word); ++i) {
    RecordView v;
    uint32_t padded;
    DecodeStatus st = decode_record(seg.data() + rec, end - rec, seed, i, true, &v, &padded);
    if (st != DecodeStatus::kOk)
      return {FrameCheck::kBadRecords, std::string(decode_status_text(st)) + " (record " + std::to_string(i) + " of frame)"};
    rec += padded;
  }
  if (rec > end) return {FrameCheck::kBadRecords, "records overrun their frame"};
  return {};
}

bool word_is_sane(const Segment& seg, uint32_t pos, uint64_t w) {
  const uint32_t len = claim_length(w);
  const ClaimState st = claim_state(w);
  return is_frame_state(st) && len >= kFrameHeaderBytes && claim_count(w) > 0 &&
         static_cast<uint64_t>(pos) + len <= seg.capacity();
}

// A segment file shorter than its header says (copied or cut short): extend
// it with zeros so that it maps whole; the scan then cuts what is torn.
Status restore_truncated(const std::string& path, RecoveryReport& report, bool* restored) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "cannot open " + path);
  ipc::FileHeader h{};
  const ssize_t n = ::pread(fd, &h, sizeof h, 0);
  struct stat st;
  ::fstat(fd, &st);
  Status result;
  if (n == sizeof h && h.magic == ipc::kFileMagic && h.kind == static_cast<uint32_t>(ipc::FileKind::kSegment) &&
      h.file_bytes > static_cast<uint64_t>(st.st_size) && static_cast<uint64_t>(st.st_size) >= h.data_offset &&
      h.file_bytes <= (uint64_t{1} << 31)) {
    if (::ftruncate(fd, static_cast<off_t>(h.file_bytes)) != 0) {
      result = errno_error(errno, "cannot restore size of " + path);
    } else {
      *restored = true;
      report.notes.push_back("segment " + path + " was truncated to " + std::to_string(st.st_size) +
                             " bytes; restored to " + std::to_string(h.file_bytes) + " and scanned");
    }
  }
  ::close(fd);
  return result;
}

}  // namespace

namespace {

// One frame as the recovery walk found it.
struct ScannedFrame {
  uint32_t position;
  uint64_t word;
  uint64_t offset;  // of its first record
  bool valid;       // word sane and, if COMMITTED and checked, records intact
};

// The first index slot past `position` that points at a sane word, as
// (position, offset); false if none.
bool resync_point(const Segment& s, uint32_t position, uint32_t* next_pos, uint64_t* next_offset) {
  for (uint64_t k = position / s.index_interval() + 1; k < s.slot_count(); ++k) {
    const IndexSlot& slot = s.slot(k);
    const uint32_t v = slot.rel_offset_plus_1.load(std::memory_order_acquire);
    if (v == 0 || slot.position <= position || slot.position >= s.capacity()) continue;
    if (!word_is_sane(s, slot.position, s.word(slot.position).load(std::memory_order_acquire))) continue;
    *next_pos = slot.position;
    *next_offset = s.base_offset() + v - 1;
    return true;
  }
  return false;
}

// Walks every frame of `s`, stepping over a damaged frame word by the index
// (the damage is noted, the frames after it are kept). Checks the records of
// COMMITTED frames when `check_records`. *end is where claimed frames end.
std::vector<ScannedFrame> scan_segment(const Segment& s, bool check_records, RecoveryReport& report,
                                       uint32_t* end) {
  std::vector<ScannedFrame> frames;
  uint32_t pos = 0;
  uint64_t offset = s.base_offset();
  while (static_cast<uint64_t>(pos) + kFrameHeaderBytes <= s.capacity()) {
    const uint64_t w = s.word(pos).load(std::memory_order_acquire);
    if (w == 0 || claim_state(w) == kEndOfSegment) break;
    if (!word_is_sane(s, pos, w)) {
      frames.push_back({pos, w, offset, false});
      uint32_t next_pos;
      uint64_t next_offset;
      if (!resync_point(s, pos, &next_pos, &next_offset)) break;
      report.notes.push_back("damaged frame word at position " + std::to_string(pos) + " of " + s.path() +
                             "; offsets " + std::to_string(offset) + ".." + std::to_string(next_offset - 1) +
                             " are unreadable, frames after them are kept");
      pos = next_pos;
      offset = next_offset;
      continue;
    }
    ++report.frames_checked;
    bool valid = true;
    if (check_records && (claim_state(w) == kCommitted || claim_state(w) == kPrepared)) {
      FrameVerdict v = check_committed_frame(s, pos, w, offset);
      if (v.check != FrameCheck::kValid) {
        valid = false;
        report.notes.push_back("frame at position " + std::to_string(pos) + " of " + s.path() + ": " + v.what);
      }
    }
    frames.push_back({pos, w, offset, valid});
    offset += claim_count(w);
    pos += claim_length(w);
  }
  *end = pos;
  return frames;
}

}  // namespace

Status recover_partition(Partition& part, bool machine_restarted, RecoveryReport& report) {
  ++report.partitions;
  // Files a process died holding half-made: a temporary segment (".tmp.")
  // or a spare it was recycling (".recycling-"). Nobody else is attached.
  if (auto names = ipc::list_dir(part.dir())) {
    for (const auto& n : *names) {
      if (n.find(".tmp.") == std::string::npos && n.rfind(".recycling-", 0) != 0) continue;
      ::unlink((part.dir() + "/" + n).c_str());
      report.notes.push_back("removed half-made file " + part.dir() + "/" + n);
    }
  }
  auto bases = part.segment_bases();
  if (!bases) return std::unexpected(bases.error());
  if (bases->empty()) return {};
  const std::string newest_path = part.dir() + "/" + segment_file_name(bases->back());
  bool truncated = false;
  if (auto ok = restore_truncated(newest_path, report, &truncated); !ok) return ok;
  const bool tail_may_be_torn = machine_restarted || truncated;
  auto& control = part.control();
  if (control.start_offset.load(std::memory_order_relaxed) < bases->front())
    control.start_offset.store(bases->front(), std::memory_order_release);
  control.newest_base.store(bases->back(), std::memory_order_release);
  // Every claim intent is a dead process's: none may look live to a later
  // repairer once owner ids are reused.
  for (uint32_t i = 0; i < kClaimIntents; ++i) {
    part.intent(i).position.store(0, std::memory_order_relaxed);
    part.intent(i).holder.store(0, std::memory_order_relaxed);
  }
  if (control.exclusive_dirty_end.load(std::memory_order_acquire) != 0) {
    report.notes.push_back("cleared what a dead exclusive writer left past the tail of " + part.dir());
    // Before the walk below trusts "zeros past the tail".
    if (auto ok = part.clean_exclusive_leftovers(); !ok) return ok;
  }

  // Only the newest two segments are walked. Older ones are sealed and
  // complete; a dead writer's claim left in one is aborted by the first
  // reader that reaches it (its owner's liveness lock is free), so opening a
  // large bus never maps its whole history.
  for (size_t i = bases->size() >= 2 ? bases->size() - 2 : 0; i < bases->size(); ++i) {
    auto seg = part.segment((*bases)[i]);
    if (!seg) {
      report.notes.push_back("segment " + part.dir() + "/" + segment_file_name((*bases)[i]) +
                             " cannot be opened: " + seg.error().to_string());
      continue;
    }
    Segment& s = **seg;
    const bool newest = i + 1 == bases->size();
    // Shared writers that died between their tail claim and their claim
    // word left 0 words below the EXACT tail: the walk below would stop at
    // them, and the next claim would land on the frames after them. Not in
    // the newest segment after a machine restart or a truncation: then its
    // tail word may be ahead of what reached the file, and the walk cuts
    // there.
    uint64_t gaps = 0;
    if (!(tail_may_be_torn && newest) && !part.repair_gaps(s, &gaps))
      report.notes.push_back("a claimed range of " + s.path() + " whose writer died before its claim word cannot "
                             "be measured; the walk stops there");
    if (gaps != 0) {
      report.claims_aborted += gaps;
      report.notes.push_back("aborted " + std::to_string(gaps) + " claimed range(s) whose writers died before "
                             "their claim words in " + s.path());
    }
    uint32_t end = 0;
    std::vector<ScannedFrame> frames = scan_segment(s, newest, report, &end);
    // Everyone else is dead: a CLAIMED frame will never be committed.
    for (const ScannedFrame& f : frames) {
      if (!f.valid || !is_open_claim(claim_state(f.word))) continue;
      part.abort_claim(s, f.position, f.word);
      ++report.claims_aborted;
      report.notes.push_back("aborted a dead writer's claim at offset " + std::to_string(f.offset) + " in " + s.path());
    }
    if (!newest) continue;
    // A torn tail: invalid frames with nothing valid after them. Cut it off
    // (zeroed to the end of the segment, so the next claim starts clean).
    // Invalid frames followed by valid ones are damage in the middle: they
    // stay, reported above and by readers, never returned as data.
    size_t keep = frames.size();
    while (keep > 0 && !frames[keep - 1].valid) --keep;
    if (keep < frames.size() && !tail_may_be_torn) {
      report.notes.push_back("the last frames of " + s.path() + " (from offset " + std::to_string(frames[keep].offset) +
                             ") fail validation although no crash could have torn them: kept as corruption");
      keep = frames.size();
    }
    if (keep < frames.size()) {
      const uint32_t cut = frames[keep].position;
      const uint64_t bytes = s.capacity() - cut;
      std::memset(s.data() + cut, 0, bytes);
      ++report.torn_frames;
      report.torn_bytes_zeroed += bytes;
      report.notes.push_back("cut a torn tail of " + s.path() + " at position " + std::to_string(cut) + " (offset " +
                             std::to_string(frames[keep].offset) + ")");
      frames.resize(keep);
      end = cut;
    }
    // After a crash of the machine the walk may have stopped at a 0 word with
    // frames after it (their claim words reached the file, an earlier one's
    // did not): past the tail must be zeros, or the next claims would land
    // on the old layout and readers would find old frames after them.
    if (tail_may_be_torn && static_cast<uint64_t>(end) + kFrameHeaderBytes <= s.capacity() &&
        s.word(end).load(std::memory_order_relaxed) == 0) {
      if (const uint32_t n = s.zero_stray(end, s.capacity()); n > 0) {
        report.torn_bytes_zeroed += n;
        report.notes.push_back("zeroed " + std::to_string(n) + " bytes past the last whole frame of " + s.path() +
                               " (position " + std::to_string(end) + ")");
      }
    }
    // A shared writer that owned the tail (docs/architecture.md, "The owned
    // tail") writes a frame past it before it publishes it: if it died
    // meanwhile, its bytes lie past the frames, up to what it announced.
    {
      SegmentControl& c = s.control();
      const uint32_t dirty = std::min(c.owner_dirty_end.load(std::memory_order_relaxed), s.capacity());
      if (tail_owned(c.tail_hint.load(std::memory_order_relaxed)) && uint64_t{end} + 8 <= dirty &&
          s.word(end).load(std::memory_order_relaxed) == 0) {
        if (const uint32_t n = s.zero_stray(end, dirty); n > 0) {
          report.torn_bytes_zeroed += n;
          report.notes.push_back("zeroed " + std::to_string(n) + " bytes a writer that owned the tail of " + s.path() +
                                 " may have left past its frames (position " + std::to_string(end) + ")");
        }
      }
      c.owner_dirty_end.store(0, std::memory_order_relaxed);
      c.revoker.store(0, std::memory_order_relaxed);
    }
    // Rebuild the index and the tail hint from the frames kept.
    for (uint64_t k = 0; k < s.slot_count(); ++k) s.slot(k).rel_offset_plus_1.store(0, std::memory_order_relaxed);
    s.control().tail_hint.store(0, std::memory_order_relaxed);
    uint64_t end_offset = s.base_offset();
    for (const ScannedFrame& f : frames) {
      if (!word_is_sane(s, f.position, f.word)) continue;
      int64_t ts = 0;
      if (claim_state(f.word) == kCommitted) {
        RecordHeader h;
        std::memcpy(&h, s.data() + f.position + kFrameHeaderBytes, sizeof h);
        ts = h.timestamp_ns;
      }
      s.index_frame(f.position, claim_length(f.word), static_cast<uint32_t>(f.offset - s.base_offset()), ts);
      ++report.index_slots_rebuilt;
      end_offset = f.offset + claim_count(f.word);
    }
    const bool sealed = static_cast<uint64_t>(end) + kFrameHeaderBytes > s.capacity() ||
                        claim_state(s.word(end).load(std::memory_order_acquire)) == kEndOfSegment;
    s.advance_hint(sealed ? s.capacity() : end, static_cast<uint32_t>(end_offset - s.base_offset()));
  }
  return {};
}

Status verify_partition(Partition& part, VerifyReport& report) {
  auto bases = part.segment_bases();
  if (!bases) return std::unexpected(bases.error());
  const std::string& topic = part.topic().name;
  auto issue = [&](const std::string& seg, uint64_t pos, uint64_t off, std::string what) {
    report.issues.push_back(VerifyIssue{topic, part.index(), seg, pos, off, std::move(what)});
  };
  uint64_t expected_base = UINT64_MAX;
  for (uint64_t base : *bases) {
    auto seg = part.segment(base);
    if (!seg) {
      issue(part.dir() + "/" + segment_file_name(base), 0, base, seg.error().to_string());
      expected_base = UINT64_MAX;
      continue;
    }
    Segment& s = **seg;
    ++report.segments;
    if (expected_base != UINT64_MAX && base != expected_base)
      issue(s.path(), 0, base, "segment starts at offset " + std::to_string(base) + " but the previous one ended at " +
                                   std::to_string(expected_base));
    uint32_t pos = 0;
    uint64_t offset = base;
    uint32_t rel = 0;
    bool sealed = false;
    bool partly = false;  // the walk stopped before the end of the claims
    while (static_cast<uint64_t>(pos) + kFrameHeaderBytes <= s.capacity()) {
      const uint64_t w = s.word(pos).load(std::memory_order_acquire);
      if (w == 0) {
        // A 0 word below an EXACT tail is a claimed range whose word is not
        // written yet: stepped over (measured as a repairer would) unless a
        // live writer is inside it. Reads only: verify repairs nothing.
        const Partition::ZeroWord z = part.look_at_zero_word(s, pos);
        if (z.kind == Partition::ZeroWord::kPublished) continue;
        if (z.kind == Partition::ZeroWord::kEnd) break;
        if (z.kind == Partition::ZeroWord::kSealed) {
          sealed = true;
          break;
        }
        ++report.open_claims;
        if (z.kind == Partition::ZeroWord::kLive) {
          partly = true;
          ++report.segments_partly_checked;
          break;
        }
        uint32_t next_pos;
        uint64_t next_offset;
        if (!part.measure_gap(s, pos, rel, z.tail, &next_pos, &next_offset)) {
          issue(s.path(), pos, offset,
                "a claimed range whose claim word reads 0 cannot be measured; the rest of the segment is unreadable");
          partly = true;
          break;
        }
        rel += static_cast<uint32_t>(next_offset - offset);
        offset = next_offset;
        pos = next_pos;
        continue;
      }
      if (claim_state(w) == kEndOfSegment) {
        sealed = true;
        break;
      }
      if (!word_is_sane(s, pos, w)) {
        issue(s.path(), pos, offset, "invalid frame word; the rest of the segment is unreadable");
        partly = true;
        break;
      }
      ++report.frames;
      if (claim_state(w) == kCommitted || claim_state(w) == kPrepared) {
        FrameVerdict v = check_committed_frame(s, pos, w, offset);
        if (v.check != FrameCheck::kValid) issue(s.path(), pos, offset, v.what);
        else if (claim_state(w) == kCommitted) report.records += claim_count(w);
        else ++report.prepared_frames;
      } else if (claim_state(w) == kAborted) {
        ++report.aborted_frames;
      } else {
        ++report.open_claims;
      }
      // Index slots covered by this frame must point at it.
      const uint32_t interval = s.index_interval();
      for (uint64_t k = (uint64_t{pos} + interval - 1) / interval;
           k * interval < uint64_t{pos} + claim_length(w) && k < s.slot_count(); ++k) {
        const IndexSlot& slot = s.slot(k);
        const uint32_t v = slot.rel_offset_plus_1.load(std::memory_order_acquire);
        if (v != 0 && (v - 1 != rel || slot.position != pos))
          issue(s.path(), pos, offset, "index slot " + std::to_string(k) + " points at offset " +
                                           std::to_string(base + v - 1) + " position " + std::to_string(slot.position));
      }
      report.bytes += claim_length(w);
      offset += claim_count(w);
      rel += claim_count(w);
      pos += claim_length(w);
    }
    if (static_cast<uint64_t>(pos) + kFrameHeaderBytes > s.capacity()) sealed = true;
    // Slots past the end must be empty (past a range we could not step
    // over, the frames and their slots were not looked at).
    const uint32_t interval = s.index_interval();
    for (uint64_t k = (uint64_t{pos} + interval - 1) / interval; !partly && k < s.slot_count(); ++k) {
      if (s.slot(k).rel_offset_plus_1.load(std::memory_order_acquire) == 0) continue;
      // A writer appending since our walk stored its frame's slot before
      // its word: then its claim moved the tail past our end, or its word
      // is there now (acquire, both: after the slot's load). Only a
      // writer between those two stores of its own is still taken for
      // damage, and a second run does not find it.
      if (!sealed && (s.word(pos).load(std::memory_order_acquire) != 0 ||
                      tail_position(s.control().tail_hint.load(std::memory_order_acquire)) > pos))
        break;
      issue(s.path(), pos, offset, "index slot " + std::to_string(k) + " points past the last frame");
      break;
    }
    expected_base = sealed ? offset : UINT64_MAX;
  }
  return {};
}

}  // namespace sluice
