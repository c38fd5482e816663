//! A data-only interpreter for the small pickle subset that `torch.save` writes for voice presets.
//!
//! Nothing is ever executed: `GLOBAL` resolves only names on an allow-list ([`Global`]) and every
//! "call" (`REDUCE`, `NEWOBJ`, `BUILD`) just records data. Objects live in an arena and are referred
//! to by index, so memo references (`BINGET`) are O(1) and reference cycles are harmless. No opcode
//! copies a container, which keeps memory linear in the input size; every length field is bounded
//! by the bytes that remain.

use std::collections::HashMap;
use std::rc::Rc;

use candle_core::DType;

/// Highest tensor rank accepted from `_rebuild_tensor_v2` (bounds the per-tensor copy of sizes).
const MAX_RANK: usize = 8;

/// Index of an object in the arena of a [`Pickle`].
pub(super) type ObjId = usize;

/// A pickle value: immutable scalars inline, containers and instances by arena index. Booleans
/// and floats are only recognised, never read by the preset reader, so they carry no payload.
#[derive(Debug, Clone)]
pub(super) enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Obj(ObjId),
}

/// Element type of a torch typed storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StorageDtype {
    BF16,
    F16,
    F32,
}

impl StorageDtype {
    /// Bytes per element.
    pub(super) fn size(self) -> usize {
        match self {
            StorageDtype::BF16 | StorageDtype::F16 => 2,
            StorageDtype::F32 => 4,
        }
    }

    /// The matching candle dtype.
    pub(super) fn dtype(self) -> DType {
        match self {
            StorageDtype::BF16 => DType::BF16,
            StorageDtype::F16 => DType::F16,
            StorageDtype::F32 => DType::F32,
        }
    }
}

/// The only globals a voice preset may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(StorageDtype),
    ModelOutput,
    DynamicCache,
}

impl Global {
    /// Resolves `module.name` against the allow-list; anything else is refused by name.
    fn resolve(module: &str, name: &str) -> Result<Self, String> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch", "BFloat16Storage") => Global::Storage(StorageDtype::BF16),
            ("torch", "HalfStorage") => Global::Storage(StorageDtype::F16),
            ("torch", "FloatStorage") => Global::Storage(StorageDtype::F32),
            ("transformers.modeling_outputs", "BaseModelOutputWithPast") => Global::ModelOutput,
            ("transformers.cache_utils", "DynamicCache") => Global::DynamicCache,
            _ => {
                return Err(format!(
                    "pickle global {module}.{name} is not allowed in a voice preset"
                ))
            }
        })
    }
}

/// A storage named by a persistent id `('storage', <Class>, key, location, numel)`.
#[derive(Debug)]
pub(super) struct StorageRef {
    pub dtype: StorageDtype,
    pub key: Rc<str>,
    pub numel: usize,
}

/// The arguments of one `_rebuild_tensor_v2(storage, offset, size, stride, ...)` call.
#[derive(Debug)]
pub(super) struct TensorSpec {
    pub storage: ObjId,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// An object of an allow-listed class: constructor args, `__setitem__` items and `BUILD` state.
#[derive(Debug)]
pub(super) struct Instance {
    pub class: Global,
    pub args: Value,
    pub items: Vec<(Value, Value)>,
    pub state: Option<Value>,
}

/// Everything that lives in the arena.
#[derive(Debug)]
pub(super) enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Class(Global),
    Instance(Instance),
    Storage(StorageRef),
    Tensor(TensorSpec),
}

/// A decoded pickle: the arena and the value `STOP` returned.
#[derive(Debug)]
pub(super) struct Pickle {
    objects: Vec<Object>,
    root: Value,
}

impl Pickle {
    /// Runs the interpreter over `data`.
    pub(super) fn parse(data: &[u8]) -> Result<Self, String> {
        Machine::new(data).run()
    }

    /// The unpickled top-level value.
    pub(super) fn root(&self) -> &Value {
        &self.root
    }

    /// The arena object a value refers to (`None` for scalars).
    pub(super) fn object(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Obj(id) => self.get(*id),
            _ => None,
        }
    }

    /// The arena object with index `id`.
    pub(super) fn get(&self, id: ObjId) -> Option<&Object> {
        self.objects.get(id)
    }
}

/// Looks up a string key in dict-like items (the last assignment wins, as in Python).
pub(super) fn lookup<'a>(items: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    items
        .iter()
        .rev()
        .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
        .map(|(_, v)| v)
}

/// Interpreter state: input cursor, value stack, mark positions, memo and arena.
struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
}

impl<'a> Machine<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objects: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Pickle, String> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            if op == b'.' {
                let root = self.pop()?;
                return Ok(Pickle {
                    objects: self.objects,
                    root,
                });
            }
            self.step(op)
                .map_err(|e| format!("pickle opcode 0x{op:02x} at byte {at}: {e}"))?;
        }
    }

    fn step(&mut self, op: u8) -> Result<(), String> {
        match op {
            0x80 => {
                let proto = self.byte()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: only a length hint
            }
            b'}' => self.push_obj(Object::Dict(Vec::new())),
            b']' => self.push_obj(Object::List(Vec::new())),
            b')' => self.push_obj(Object::Tuple(Vec::new())),
            b'(' => self.marks.push(self.stack.len()),
            b'X' => {
                let n = self.u32()? as usize;
                self.push_str(n)?;
            }
            0x8c => {
                let n = usize::from(self.byte()?);
                self.push_str(n)?;
            }
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.byte()?;
                self.stack.push(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(i64::from(v)));
            }
            0x8a => {
                let v = self.long1()?;
                self.stack.push(Value::Int(v));
            }
            b'G' => {
                self.take(8)?;
                self.stack.push(Value::Float);
            }
            b'N' => self.stack.push(Value::None),
            0x88 | 0x89 => self.stack.push(Value::Bool),
            b't' => {
                let items = self.pop_mark()?;
                self.push_obj(Object::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push_obj(Object::Tuple(items));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let global = Global::resolve(module, name)?;
                self.push_obj(Object::Class(global));
            }
            0x93 => {
                let name = self.pop_str()?;
                let module = self.pop_str()?;
                let global = Global::resolve(&module, &name)?;
                self.push_obj(Object::Class(global));
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let result = self.call(&callable, args, op == 0x81)?;
                self.push_obj(result);
            }
            b'b' => {
                let state = self.pop()?;
                match self.top_object()? {
                    Object::Instance(inst) => inst.state = Some(state),
                    _ => return Err("BUILD target is not an object of an allowed class".into()),
                }
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![(key, value)])?;
            }
            b'u' => {
                let flat = self.pop_mark()?;
                if flat.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of values".into());
                }
                let mut pairs = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                self.set_items(pairs)?;
            }
            b'a' => {
                let value = self.pop()?;
                self.append(vec![value])?;
            }
            b'e' => {
                let values = self.pop_mark()?;
                self.append(values)?;
            }
            b'q' => {
                let idx = u32::from(self.byte()?);
                self.memo_put(idx)?;
            }
            b'r' => {
                let idx = self.u32()?;
                self.memo_put(idx)?;
            }
            0x94 => {
                let idx = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.memo_put(idx)?;
            }
            b'h' => {
                let idx = u32::from(self.byte()?);
                self.memo_get(idx)?;
            }
            b'j' => {
                let idx = self.u32()?;
                self.memo_get(idx)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let storage = self.persistent_storage(&pid)?;
                self.push_obj(Object::Storage(storage));
            }
            _ => return Err("opcode not supported by the voice-preset reader".into()),
        }
        Ok(())
    }

    // ---- input ----

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let bytes = self
            .input
            .get(self.pos..end)
            .ok_or_else(|| format!("truncated pickle: {n} bytes needed at byte {}", self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A newline-terminated ASCII line (the operands of `GLOBAL`).
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL operand")?;
        let bytes = self.take(len + 1)?;
        let text = bytes.get(..len).unwrap_or_default();
        std::str::from_utf8(text).map_err(|_| "GLOBAL operand is not UTF-8".to_string())
    }

    /// `LONG1`: a little-endian two's-complement integer of at most 8 bytes.
    fn long1(&mut self) -> Result<i64, String> {
        let n = usize::from(self.byte()?);
        let bytes = self.take(n)?;
        if n > 8 {
            return Err(format!("{n}-byte integer is too large"));
        }
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut full = if negative { [0xffu8; 8] } else { [0u8; 8] };
        for (dst, src) in full.iter_mut().zip(bytes) {
            *dst = *src;
        }
        Ok(i64::from_le_bytes(full))
    }

    // ---- stack ----

    fn push_obj(&mut self, obj: Object) {
        self.objects.push(obj);
        self.stack.push(Value::Obj(self.objects.len() - 1));
    }

    fn push_str(&mut self, n: usize) -> Result<(), String> {
        let bytes = self.take(n)?;
        let text = std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8".to_string())?;
        self.stack.push(Value::Str(Rc::from(text)));
        Ok(())
    }

    /// Pops one value; values below the innermost MARK are out of reach, as in Python.
    fn pop(&mut self) -> Result<Value, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn pop_str(&mut self) -> Result<Rc<str>, String> {
        match self.pop()? {
            Value::Str(s) => Ok(s),
            _ => Err("expected a string".into()),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        if mark > self.stack.len() {
            return Err("MARK above the stack top".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn top_object(&mut self) -> Result<&mut Object, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        match self.stack.last() {
            Some(Value::Obj(id)) => self.objects.get_mut(*id).ok_or_else(|| "bad object".into()),
            _ => Err("target is not an object".into()),
        }
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), String> {
        match self.top_object()? {
            Object::Dict(items) => items.extend(pairs),
            Object::Instance(inst) => inst.items.extend(pairs),
            _ => return Err("SETITEM(S) target is not a dict".into()),
        }
        Ok(())
    }

    fn append(&mut self, values: Vec<Value>) -> Result<(), String> {
        match self.top_object()? {
            Object::List(items) => items.extend(values),
            _ => return Err("APPEND(S) target is not a list".into()),
        }
        Ok(())
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), String> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or("memoize on an empty stack")?;
        self.memo.insert(idx, top);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), String> {
        let value = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| format!("memo entry {idx} is not defined"))?;
        self.stack.push(value);
        Ok(())
    }

    // ---- object construction ----

    fn obj(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Obj(id) => self.objects.get(*id),
            _ => None,
        }
    }

    fn tuple(&self, value: &Value) -> Result<&[Value], String> {
        match self.obj(value) {
            Some(Object::Tuple(items)) => Ok(items),
            _ => Err("expected a tuple".into()),
        }
    }

    /// `REDUCE` / `NEWOBJ`: builds the data an allowed callable would produce.
    fn call(&self, callable: &Value, args: Value, newobj: bool) -> Result<Object, String> {
        let global = match self.obj(callable) {
            Some(Object::Class(g)) => *g,
            _ => return Err("callable is not an allowed global".into()),
        };
        let arg_list = self.tuple(&args)?;
        match global {
            Global::OrderedDict if arg_list.is_empty() => Ok(Object::Dict(Vec::new())),
            Global::OrderedDict => Err("OrderedDict with constructor arguments".into()),
            Global::RebuildTensorV2 if !newobj => self.rebuild_tensor(arg_list).map(Object::Tensor),
            Global::ModelOutput | Global::DynamicCache => Ok(Object::Instance(Instance {
                class: global,
                args,
                items: Vec::new(),
                state: None,
            })),
            Global::RebuildTensorV2 | Global::Storage(_) => {
                Err(format!("{global:?} cannot be called this way"))
            }
        }
    }

    fn usize_of(value: &Value, what: &str) -> Result<usize, String> {
        match value {
            Value::Int(i) => usize::try_from(*i).map_err(|_| format!("negative {what} {i}")),
            _ => Err(format!("{what} is not an integer")),
        }
    }

    fn dims(&self, value: &Value, what: &str) -> Result<Vec<usize>, String> {
        let items = self.tuple(value)?;
        if items.len() > MAX_RANK {
            return Err(format!("{what} has rank {} > {MAX_RANK}", items.len()));
        }
        items.iter().map(|v| Self::usize_of(v, what)).collect()
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<TensorSpec, String> {
        let [storage, offset, size, stride, ..] = args else {
            return Err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)".into());
        };
        let storage = match (storage, self.obj(storage)) {
            (Value::Obj(id), Some(Object::Storage(_))) => *id,
            _ => return Err("_rebuild_tensor_v2 storage argument is not a storage".into()),
        };
        let size = self.dims(size, "tensor size")?;
        let stride = self.dims(stride, "tensor stride")?;
        if size.len() != stride.len() {
            return Err(format!(
                "tensor size {size:?} and stride {stride:?} differ in rank"
            ));
        }
        Ok(TensorSpec {
            storage,
            offset: Self::usize_of(offset, "storage offset")?,
            size,
            stride,
        })
    }

    /// `BINPERSID` of `('storage', <StorageClass>, key, location, numel)`.
    fn persistent_storage(&self, pid: &Value) -> Result<StorageRef, String> {
        let [kind, class, key, _location, numel] = self.tuple(pid)? else {
            return Err("persistent id is not a 5-tuple".into());
        };
        if !matches!(kind, Value::Str(s) if &**s == "storage") {
            return Err("persistent id is not a storage".into());
        }
        let dtype = match self.obj(class) {
            Some(Object::Class(Global::Storage(dtype))) => *dtype,
            _ => return Err("persistent id does not name a storage class".into()),
        };
        let Value::Str(key) = key else {
            return Err("storage key is not a string".into());
        };
        Ok(StorageRef {
            dtype,
            key: key.clone(),
            numel: Self::usize_of(numel, "storage size")?,
        })
    }
}
