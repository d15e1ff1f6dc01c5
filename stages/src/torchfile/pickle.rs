//! A minimal unpickler for the subset of Python pickles that PyTorch writes.
//!
//! It decodes the opcodes `torch.save` (protocol 2) and TorchScript's `data.pkl` emit into a
//! plain [`Value`] tree and never executes anything: a `GLOBAL` is only a name, and `REDUCE` /
//! `NEWOBJ` on a name become [`Value::Object`] unless the name is one of the three callables that
//! matter for tensors (`collections.OrderedDict`, `torch._utils._rebuild_tensor[_v2]`,
//! `torch._utils._rebuild_parameter`, TorchScript's `torch.jit._pickle.build_*list`), which are
//! evaluated here into a dict, a list or a [`TensorRef`]. That keeps the reader safe on untrusted files.
//!
//! The memo stores copies rather than shared references. Pickle memoizes a container right
//! after creating it and fills it afterwards (TorchScript shares one `padding` list between many
//! convs this way), so each stack slot remembers the memo keys it was stored under and every
//! in-place mutation (`APPEND(S)`, `SETITEM(S)`, `BUILD`) refreshes those copies. Only
//! self-referencing structures, which PyTorch never writes, would still be seen incomplete.

use super::TorchFileError;

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, little-endian two's complement as `LONG1` stores it.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered, like the `OrderedDict`s PyTorch writes.
    Dict(Vec<(Value, Value)>),
    /// A `GLOBAL module name` reference, never resolved.
    Global {
        module: String,
        name: String,
    },
    /// An instance of a class we do not evaluate, with its `BUILD` state once set.
    Object {
        module: String,
        name: String,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
    /// A persistent id (`BINPERSID`): PyTorch's reference to a storage.
    PersId(Box<Value>),
    Tensor(TensorRef),
}

/// A tensor view onto a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage key: the file name under `data/` (zip) or the legacy key.
    pub key: String,
    /// The storage class name, e.g. `FloatStorage`.
    pub storage_type: String,
    /// Elements in the whole storage.
    pub storage_numel: usize,
    /// Offset of the first element, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    fn as_usize_seq(&self) -> Option<Vec<usize>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v
                .iter()
                .map(|x| x.as_int().and_then(|i| usize::try_from(i).ok()))
                .collect(),
            _ => None,
        }
    }
}

/// One stack slot: a value or a `MARK`.
enum Slot {
    Mark,
    /// A value and the memo keys that hold a copy of it.
    V(Value, Vec<usize>),
}

/// Decodes one pickle starting at `data[0]`; returns the value and the bytes consumed (legacy
/// `.pth` files are several pickles back to back).
pub fn unpickle(data: &[u8]) -> Result<(Value, usize), TorchFileError> {
    let mut u = Unpickler {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: Vec::new(),
    };
    let v = u.run()?;
    Ok((v, u.pos))
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: Vec<Option<Value>>,
}

fn bad(message: impl Into<String>) -> TorchFileError {
    TorchFileError::Pickle(message.into())
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TorchFileError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| bad(format!("truncated pickle at byte {}", self.pos)))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, TorchFileError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TorchFileError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TorchFileError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, TorchFileError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| bad("unterminated line"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<String, TorchFileError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("invalid utf-8 in a pickled string"))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::V(v, Vec::new()));
    }

    fn pop(&mut self) -> Result<Value, TorchFileError> {
        match self.stack.pop() {
            Some(Slot::V(v, _)) => Ok(v),
            Some(Slot::Mark) => Err(bad("unexpected mark on the pickle stack")),
            None => Err(bad("pickle stack underflow")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, TorchFileError> {
        match self.stack.last_mut() {
            Some(Slot::V(v, _)) => Ok(v),
            _ => Err(bad("pickle stack underflow")),
        }
    }

    /// Pops everything down to the last mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, TorchFileError> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(Slot::V(v, _)) => items.push(v),
                Some(Slot::Mark) => break,
                None => return Err(bad("no mark on the pickle stack")),
            }
        }
        items.reverse();
        Ok(items)
    }

    fn memo_put(&mut self, idx: usize) -> Result<(), TorchFileError> {
        let v = self.top()?.clone();
        if let Some(Slot::V(_, keys)) = self.stack.last_mut() {
            keys.push(idx);
        }
        if self.memo.len() <= idx {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }

    /// After an in-place mutation of the top value, updates the memo copies of it.
    fn refresh_memo(&mut self) {
        if let Some(Slot::V(v, keys)) = self.stack.last() {
            for &k in keys {
                self.memo[k] = Some(v.clone());
            }
        }
    }

    fn memo_get(&mut self, idx: usize) -> Result<(), TorchFileError> {
        let v = self.memo.get(idx).cloned().flatten();
        let v = v.ok_or_else(|| bad(format!("memo key {idx} used before it was set")))?;
        self.push(v);
        Ok(())
    }

    fn run(&mut self) -> Result<Value, TorchFileError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(bad(format!("pickle protocol {proto} is not supported")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: only a length hint
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?.to_vec();
                    self.push(long_value(b));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s));
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                b'U' | b'C' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items));
                }
                b']' => self.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(bad("APPEND on a non-list")),
                    }
                    self.refresh_memo();
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(bad("APPENDS on a non-list")),
                    }
                    self.refresh_memo();
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items)?;
                    self.push(Value::Dict(d));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(bad("SETITEM on a non-dict")),
                    }
                    self.refresh_memo();
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let kv = pairs(items)?;
                    match self.top()? {
                        Value::Dict(d) => d.extend(kv),
                        _ => return Err(bad("SETITEMS on a non-dict")),
                    }
                    self.refresh_memo();
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.push(Value::Global { module, name })
                        }
                        _ => return Err(bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let args = match args {
                        Value::Tuple(a) => a,
                        _ => return Err(bad("REDUCE/NEWOBJ arguments are not a tuple")),
                    };
                    let v = call(callable, args)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.top()? {
                        Value::Object { state: s, .. } => *s = Some(Box::new(state)),
                        // An OrderedDict's `_metadata` and a tensor's hooks: not needed.
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => {
                            return Err(bad(format!("BUILD on an unexpected value {other:?}")))
                        }
                    }
                    self.refresh_memo();
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersId(Box::new(pid)));
                }
                b'q' => {
                    let i = usize::from(self.u8()?);
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = usize::from(self.u8()?);
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?;
                }
                b'0' => {
                    self.stack.pop();
                }
                other => {
                    return Err(bad(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    )))
                }
            }
        }
    }
}

fn long_value(b: Vec<u8>) -> Value {
    if b.len() <= 8 {
        let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
        let mut a = [if neg { 0xff } else { 0 }; 8];
        a[..b.len()].copy_from_slice(&b);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(b)
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, TorchFileError> {
    if items.len() % 2 != 0 {
        return Err(bad("odd number of items for a dict"));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Evaluates the few callables the tensor subset needs; everything else stays an [`Value::Object`].
fn call(callable: Value, args: Vec<Value>) -> Result<Value, TorchFileError> {
    let (module, name) = match callable {
        Value::Global { module, name } => (module, name),
        other => return Err(bad(format!("call of a non-global {other:?}"))),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            rebuild_tensor(&args).map(Value::Tensor)
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => args
            .into_iter()
            .next()
            .ok_or_else(|| bad("`_rebuild_parameter` without a tensor")),
        // TorchScript wraps typed lists (a conv's `padding`) in these builders.
        ("torch.jit._pickle", "build_intlist")
        | ("torch.jit._pickle", "build_doublelist")
        | ("torch.jit._pickle", "build_boollist") => match <[Value; 1]>::try_from(args) {
            Ok([list @ Value::List(_)]) => Ok(list),
            _ => Err(bad(format!("malformed `{module}.{name}` arguments"))),
        },
        _ => Ok(Value::Object {
            module,
            name,
            args,
            state: None,
        }),
    }
}

/// `(storage, offset, size, stride, ...)` where storage is the persistent id
/// `('storage', StorageClass, key, location, numel[, view_metadata])`.
fn rebuild_tensor(args: &[Value]) -> Result<TensorRef, TorchFileError> {
    let err = || bad("malformed `_rebuild_tensor_v2` arguments");
    let [pid, offset, size, stride, ..] = args else {
        return Err(err());
    };
    let Value::PersId(pid) = pid else {
        return Err(err());
    };
    let Value::Tuple(p) = pid.as_ref() else {
        return Err(err());
    };
    if p.len() < 5 || p[0].as_str() != Some("storage") {
        return Err(err());
    }
    let storage_type = match &p[1] {
        Value::Global { name, .. } => name.clone(),
        _ => return Err(err()),
    };
    if p.len() > 5 && p[5] != Value::None {
        return Err(bad(
            "legacy storage views are not supported; re-save the file with torch.save",
        ));
    }
    let key = p[2].as_str().ok_or_else(err)?.to_string();
    let storage_numel = p[4]
        .as_int()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(err)?;
    let offset = offset
        .as_int()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(err)?;
    let shape = size.as_usize_seq().ok_or_else(err)?;
    let stride = stride.as_usize_seq().ok_or_else(err)?;
    if shape.len() != stride.len() {
        return Err(err());
    }
    Ok(TensorRef {
        key,
        storage_type,
        storage_numel,
        offset,
        shape,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_containers_and_memo() {
        // pickle.dumps({'a': [1, -2, 300, 70000], 'b': ('x', None, True)}, protocol=2)
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eX\x01\x00\x00\x00bq\x03X\x01\x00\x00\x00xq\x04N\x88\x87q\x05u.";
        let (v, used) = unpickle(data).unwrap();
        assert_eq!(used, data.len());
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        assert_eq!(d[0].0, Value::Str("a".into()));
        assert_eq!(
            d[0].1,
            Value::List(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Int(70000)
            ])
        );
        assert_eq!(
            d[1].1,
            Value::Tuple(vec![Value::Str("x".into()), Value::None, Value::Bool(true)])
        );
    }

    #[test]
    fn a_list_memoized_before_it_is_filled_is_seen_filled_through_the_memo() {
        // l = [0, 3]; pickle.dumps({'a': l, 'b': l}, protocol=2): `b` is a BINGET of the list
        // that was memoized while still empty, the way TorchScript shares `padding` lists.
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x00K\x03eX\x01\x00\x00\x00bq\x03h\x02u.";
        let (v, _) = unpickle(data).unwrap();
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        let l = Value::List(vec![Value::Int(0), Value::Int(3)]);
        assert_eq!(d[0].1, l);
        assert_eq!(d[1].1, l);
    }

    #[test]
    fn rejects_unknown_opcodes_instead_of_guessing() {
        let err = unpickle(b"\x80\x02\xff.").unwrap_err();
        assert!(err.to_string().contains("0xff"), "{err}");
    }
}
