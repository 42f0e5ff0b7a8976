import { describe, expect, it } from "vitest";
import { attributeNative, nativeKind, parsePerfLine, type NativeSample } from "./native.ts";

const WORKERD = "/x/bin/workerd";
const KERNEL = "[kernel.kallsyms]";

/** `perf script -F comm,tid,ip,sym,dso` output: two samples, one thread name with a space. */
const SCRIPT = `workerd  3628 
\t         47a2d49 sqlite3VdbeExec (${WORKERD})
\t         3c2959e workerd::api::SqlStorage::Cursor::toArray (${WORKERD})
\t    563dcf670e0e [unknown] (/tmp/perf-3628.map)

V8 DefaultWorke  3629 
\t ffffffff8100 pvm_irq_enable (${KERNEL})
\t         4a00000 v8::internal::MarkCompactCollector::CollectGarbage (${WORKERD})
`;

function parse(text: string): NativeSample[] {
  const out: NativeSample[] = [];
  let cur: NativeSample | undefined;
  for (const line of text.split("\n")) {
    const next = parsePerfLine(line, cur);
    if (next !== cur) {
      if (cur) out.push(cur);
      cur = next;
    }
  }
  if (cur) out.push(cur);
  return out;
}

const frames = (...f: [string, string][]): NativeSample => ({
  thread: "workerd",
  frames: f.map(([sym, dso]) => ({ sym, dso })),
});

describe("parsePerfLine", () => {
  it("reads each sample's thread and its frames, leaf first", () => {
    expect(parse(SCRIPT)).toEqual([
      {
        thread: "workerd",
        frames: [
          { sym: "sqlite3VdbeExec", dso: WORKERD },
          { sym: "workerd::api::SqlStorage::Cursor::toArray", dso: WORKERD },
          { sym: "[unknown]", dso: "/tmp/perf-3628.map" },
        ],
      },
      {
        thread: "V8 DefaultWorke",
        frames: [
          { sym: "pvm_irq_enable", dso: KERNEL },
          { sym: "v8::internal::MarkCompactCollector::CollectGarbage", dso: WORKERD },
        ],
      },
    ]);
  });
});

describe("nativeKind", () => {
  it("charges kernel, libc and allocator frames to the frame that called them", () => {
    const s = frames(
      ["do_syscall_64", KERNEL],
      ["__open64", "/usr/lib/x86_64-linux-gnu/libc.so.6"],
      ["tcmalloc::tcmalloc_internal::ThreadCache::FetchFromTransferCache", WORKERD],
      ["unixOpen", WORKERD],
      ["workerd::SqliteDatabase::init", WORKERD],
    );
    expect(nativeKind(s)).toBe("SQLite");
  });

  it("names JIT-compiled code by perf's map of it", () => {
    expect(nativeKind(frames(["[unknown]", "/tmp/perf-1.map"], ["v8::Function::Call", WORKERD]))).toBe(
      "JS (JIT-compiled code)",
    );
  });

  it("keeps a sample with no user frame as the kernel's", () => {
    expect(nativeKind(frames(["pvm_irq_enable", KERNEL]))).toBe("kernel (no user frame)");
  });

  it("tells V8's collector from the rest of V8", () => {
    expect(nativeKind(frames(["v8::internal::Scavenger::Process", WORKERD]))).toBe("V8 garbage collector");
    expect(nativeKind(frames(["v8::internal::JSObject::SetProperty", WORKERD]))).toBe(
      "V8 runtime (objects, calls between JS and C++)",
    );
  });
});

describe("attributeNative", () => {
  it("counts each sample once by component and thread, and for every path on its stack", () => {
    const newActor = frames(
      ["sqlite3_prepare_v3", WORKERD],
      ["openDatabase", WORKERD],
      ["workerd::SqliteDatabase::init", WORKERD],
      ["workerd::Worker::Actor::Actor", WORKERD],
    );
    const a = attributeNative([newActor, ...parse(SCRIPT)]);
    expect(a.samples).toBe(3);
    expect(Object.fromEntries(a.byKind)).toEqual({ SQLite: 2, "V8 garbage collector": 1 });
    expect(Object.fromEntries(a.kernelByKind)).toEqual({ "V8 garbage collector": 1 });
    expect(Object.fromEntries(a.byThread)).toEqual({ workerd: 2, "V8 DefaultWorke": 1 });
    expect(Object.fromEntries(a.byPath)).toEqual({
      "creating actor instances (Worker::Actor, opening its SQLite database)": 1,
      "SQLite: opening databases": 1,
      "SQLite: preparing statements": 1,
    });
  });
});
